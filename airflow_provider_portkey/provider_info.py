"""What Airflow's providers manager reads (entry point ``apache_airflow_provider``); imports no Airflow."""

from __future__ import annotations

from typing import Any

from airflow_provider_portkey import __version__
from airflow_provider_portkey.connection_fields import CONN_TYPE, EXTRA_FIELDS

HOOK_CLASS = "airflow_provider_portkey.hooks.portkey.PortkeyHook"

#: Every module that defines a hook, sensor, operator or trigger, by kind (Airflow's provider-info
#: sections). ``tests/test_provider_info.py`` scans the package and fails on a class left out here.
MODULES: dict[str, tuple[str, ...]] = {
    "hooks": ("hooks.base", "hooks.portkey", "hooks.portkey_async"),
    # operators.response, operators.run: the create operators wait as their sensors do, by being one.
    "sensors": (
        "sensors.base",
        "sensors.response",
        "sensors.run",
        "sensors.run_step",
        "operators.response",
        "operators.run",
    ),
    "operators": ("operators.approval", "operators.response", "operators.run", "operators.run_step"),
    "triggers": ("triggers.base", "triggers.response", "triggers.run", "triggers.run_step"),
}
#: Every operator extra link, by class path.
EXTRA_LINKS = ("airflow_provider_portkey.tracing.PortkeyLogsLink",)

#: How the connection form shows the standard fields.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"host": "Base URL", "password": "Portkey API key"},
    "placeholders": {
        "host": "https://api.portkey.ai/v1 (default), or your self-hosted gateway",
        "password": "Your Portkey API key",
    },
}


def conn_fields() -> dict[str, Any]:
    """The extra options as Airflow 3.2+ ``conn-fields`` (label, description, JSON schema)."""
    return {
        name: {"label": label, "description": description, "schema": schema}
        for name, (label, description, schema) in EXTRA_FIELDS.items()
    }


def _modules(kind: str) -> list[dict[str, Any]]:
    return [
        {
            "integration-name": "Portkey",
            "python-modules": [f"airflow_provider_portkey.{name}" for name in MODULES[kind]],
        }
    ]


def get_provider_info() -> dict[str, Any]:

    return {
        "package-name": "airflow-provider-portkey",
        "name": "Portkey",
        "description": "Wait on, inspect and branch on LLM agent run steps through the Portkey AI gateway.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Portkey",
                "external-doc-url": "https://portkey.ai/docs",
                "tags": ["ai"],
            }
        ],
        "hooks": _modules("hooks"),
        "extra-links": list(EXTRA_LINKS),
        "sensors": _modules("sensors"),
        "operators": _modules("operators"),
        "triggers": _modules("triggers"),
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS,
                "hook-name": "Portkey",
                "connection-type": CONN_TYPE,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": conn_fields(),
            }
        ],
    }
