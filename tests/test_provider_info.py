"""Registration with Airflow: entry point, provider info, the CLI listings and the connection form."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_portkey
from airflow_provider_portkey import __version__
from airflow_provider_portkey.connection_fields import CONN_TYPE, EXTRA_FIELDS
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.provider_info import HOOK_CLASS, get_provider_info

DISTRIBUTION = "airflow-provider-portkey"
AIRFLOW = Path(sys.executable).with_name("airflow")


@pytest.fixture(scope="module")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run ``airflow providers ... -o json`` in a fresh AIRFLOW_HOME and return the parsed output."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    # Airflow 3.0 logs INFO lines (plugin setup, DB) to stdout ahead of the JSON; later releases
    # keep stdout clean. WARNING hides only those log lines, the JSON is printed either way.
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"

    def run(*args: str) -> list[dict[str, Any]]:
        done = subprocess.run(  # noqa: S603 - our own venv's airflow, fixed arguments
            [str(AIRFLOW), "providers", *args, "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    return run


def test_entry_point_belongs_to_the_distribution_named_in_provider_info() -> None:
    (entry,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value == "airflow_provider_portkey.provider_info:get_provider_info"
    ]
    assert entry.dist is not None
    assert entry.dist.name == DISTRIBUTION
    assert entry.load()()["package-name"] == DISTRIBUTION
    assert get_provider_info()["package-name"] == DISTRIBUTION


def test_version_is_defined_once() -> None:
    assert get_provider_info()["versions"] == [__version__]
    assert version(DISTRIBUTION) == __version__


def test_airflow_providers_list_shows_the_provider(airflow_cli: Any) -> None:
    rows = [row for row in airflow_cli("list") if row["package_name"] == DISTRIBUTION]
    assert len(rows) == 1
    assert rows[0]["version"] == __version__


def test_airflow_providers_hooks_shows_the_hook_and_connection_type(airflow_cli: Any) -> None:
    rows = [row for row in airflow_cli("hooks") if row["connection_type"] == CONN_TYPE]
    assert rows == [
        {
            "connection_type": "portkey",
            "class": "airflow_provider_portkey.hooks.portkey.PortkeyHook",
            "conn_id_attribute_name": "portkey_conn_id",
            "package_name": DISTRIBUTION,
            "hook_name": "Portkey",
        }
    ]


def test_airflow_providers_behaviours_shows_the_connection_type(airflow_cli: Any) -> None:
    assert {"field_behaviours": CONN_TYPE} in airflow_cli("behaviours")


#: Provider-info section of each kind of class, most specific base first (a sensor is an operator).
_KINDS = (
    ("sensors", "BaseSensorOperator"),
    ("operators", "BaseOperator"),
    ("hooks", "BaseHook"),
    ("triggers", "BaseTrigger"),
    ("extra-links", "BaseOperatorLink"),
)


def _package_classes() -> dict[str, set[type]]:
    """Every class the package defines, by the provider-info section it belongs in (emulator aside)."""
    from airflow.providers.common.compat.sdk import (
        BaseHook,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
    )
    from airflow.triggers.base import BaseTrigger

    bases = {
        "BaseSensorOperator": BaseSensorOperator,
        "BaseOperator": BaseOperator,
        "BaseHook": BaseHook,
        "BaseTrigger": BaseTrigger,
        "BaseOperatorLink": BaseOperatorLink,
    }
    found: dict[str, set[type]] = {kind: set() for kind, _ in _KINDS}
    for module_info in pkgutil.walk_packages(airflow_provider_portkey.__path__, "airflow_provider_portkey."):
        if module_info.name.endswith("__main__"):
            continue  # running it is its import
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue  # imported here, defined elsewhere
            kind = next((kind for kind, base in _KINDS if issubclass(cls, bases[base])), None)
            if kind is not None:
                found[kind].add(cls)
    return found


def _registered(info: dict[str, Any], kind: str) -> set[str]:
    if kind == "extra-links":
        return set(info[kind])
    return {module for entry in info[kind] for module in entry["python-modules"]}


def test_every_hook_sensor_operator_trigger_and_link_is_registered() -> None:
    info = get_provider_info()
    classes = _package_classes()
    assert all(classes.values()), classes  # the scan sees each kind
    for kind, _ in _KINDS:
        where = (
            {f"{cls.__module__}.{cls.__qualname__}" for cls in classes[kind]}
            if kind == "extra-links"
            else {cls.__module__ for cls in classes[kind]}
        )
        # Both ways: nothing defined is left out, nothing registered is stale or in the wrong section.
        assert _registered(info, kind) == where, kind


def test_every_registered_module_and_class_imports() -> None:
    info = get_provider_info()
    for kind, _ in _KINDS:
        for name in _registered(info, kind):
            if kind == "extra-links":
                module_name, _, class_name = name.rpartition(".")
                assert inspect.isclass(getattr(importlib.import_module(module_name), class_name))
            else:
                importlib.import_module(name)
    module_name, _, class_name = HOOK_CLASS.rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name) is PortkeyHook


def test_connection_type_and_default_conn_id() -> None:
    (connection_type,) = get_provider_info()["connection-types"]
    assert connection_type["connection-type"] == CONN_TYPE == PortkeyHook.conn_type == "portkey"
    assert connection_type["hook-name"] == PortkeyHook.hook_name == "Portkey"
    assert connection_type["hook-class-name"] == HOOK_CLASS
    assert PortkeyHook.default_conn_name == "portkey_default"
    assert PortkeyHook.conn_name_attr == "portkey_conn_id"
    assert PortkeyAsyncHook.conn_type == CONN_TYPE


def test_conn_fields_declare_every_extra_option_the_settings_accept() -> None:
    (connection_type,) = get_provider_info()["connection-types"]
    fields = connection_type["conn-fields"]
    assert set(fields) == set(EXTRA_FIELDS)
    for name, spec in fields.items():
        assert spec["label"], name
        assert spec["description"], name
        assert "type" in spec["schema"], name
    secret = {name for name, spec in fields.items() if spec["schema"].get("format") == "password"}
    assert secret == {"virtual_key", "provider_api_key"}


def test_ui_field_behaviour_in_provider_info_matches_the_hook() -> None:
    (connection_type,) = get_provider_info()["connection-types"]
    declared = connection_type["ui-field-behaviour"]
    from_hook = PortkeyHook.get_ui_field_behaviour()
    assert from_hook == {key.replace("-", "_"): value for key, value in declared.items()}
    assert set(from_hook) == {"hidden_fields", "relabeling", "placeholders"}
    assert "password" not in from_hook["hidden_fields"]
    assert "host" not in from_hook["hidden_fields"]


def test_airflow_reads_the_same_field_behaviour_and_extra_fields() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.field_behaviours[CONN_TYPE] == PortkeyHook.get_ui_field_behaviour()
    widgets = {key for key in manager.connection_form_widgets if key.startswith(f"extra__{CONN_TYPE}__")}
    assert widgets == {f"extra__{CONN_TYPE}__{name}" for name in EXTRA_FIELDS}


def test_form_classmethods_sit_on_the_registered_hook_class_where_older_airflow_looks() -> None:
    # Airflow < 3.2 checks ``hook_class.__dict__``: methods inherited from a base are not found.
    for name in ("get_connection_form_widgets", "get_ui_field_behaviour"):
        assert isinstance(PortkeyHook.__dict__.get(name), classmethod), name


def test_provider_info_imports_no_airflow() -> None:
    code = (
        "import sys; import airflow_provider_portkey.provider_info as p; p.get_provider_info(); "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
