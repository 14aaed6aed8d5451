"""What Airflow's providers manager reads (entry point ``apache_airflow_provider``); imports no Airflow."""

from __future__ import annotations

from typing import Any

from airflow_provider_portkey import __version__
from airflow_provider_portkey.connection_fields import CONN_TYPE, EXTRA_FIELDS

HOOK_CLASS = "airflow_provider_portkey.hooks.portkey.PortkeyHook"

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


def get_provider_info() -> dict[str, Any]:
    def modules(kind: str, *names: str) -> list[dict[str, Any]]:
        paths = [f"airflow_provider_portkey.{kind}.{name}" for name in names]
        return [{"integration-name": "Portkey", "python-modules": paths}]

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
        "hooks": modules("hooks", "portkey"),
        "extra-links": ["airflow_provider_portkey.tracing.PortkeyLogsLink"],
        "sensors": modules("sensors", "run_step", "response"),
        "operators": modules("operators", "run_step", "response"),
        "triggers": modules("triggers", "run_step", "response"),
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
