"""The emulator ships in the package, so everything it imports must be a declared dependency."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import airflow_provider_portkey.emulator as emulator


def test_every_third_party_module_the_emulator_imports_is_a_declared_dependency() -> None:
    imported: set[str] = set()
    for source in Path(emulator.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"airflow_provider_portkey"}
    declared = {
        re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.requires("airflow-provider-portkey") or []
        if "extra ==" not in requirement
    }
    distributions = metadata.packages_distributions()
    assert third_party == {"h11"}  # the emulator's HTTP server; keep this list honest
    for module in third_party:
        assert {name.lower() for name in distributions[module]} & declared, module
