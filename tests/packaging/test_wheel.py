"""The built distributions: what the sdist and wheel hold, and that Airflow finds the installed wheel.

The sdist is built from the source tree and the wheel from the unpacked sdist (``python -m build``
does both), so a file the sdist forgets breaks the wheel. ``--no-isolation`` builds with the hatchling
of the test venv (scripts/bootstrap.sh installs it): no index needed at test time.

The wheel goes into a fresh venv under tmp with ``--no-deps``; that venv sees Airflow and the other
dependencies through a ``.pth`` line naming the test venv's site-packages. A ``.pth`` line only adds a
directory to ``sys.path``, it does not run the ``.pth`` files inside it, so the editable install of
the source tree stays inert there, and the new venv's own site-packages (with the wheel) comes first.
Every Airflow command runs with that venv's Python, from a tmp working directory, with a tmp
``AIRFLOW_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import airflow_provider_portkey

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_portkey"
DIST_NAME = "airflow-provider-portkey"
VERSION = airflow_provider_portkey.__version__
ENTRY_POINT = f"provider_info = {PACKAGE}.provider_info:get_provider_info"


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class InstalledVenv:
    """A fresh venv holding the wheel, with Airflow reachable through a ``.pth`` file."""

    root: Path
    python: Path
    site_packages: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: S603
            [str(self.python), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def airflow_json(self, *args: str) -> list[dict[str, Any]]:
        """``airflow <args> -o json``; the JSON is the last stdout line that is a list."""
        stdout = self.run("-m", "airflow", *args, "-o", "json").stdout
        lines = [line for line in stdout.splitlines() if line.startswith("[")]
        assert lines, f"no JSON in the output of airflow {' '.join(args)}:\n{stdout}"
        rows: list[dict[str, Any]] = json.loads(lines[-1])
        return rows


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    pytest.importorskip("build", reason="`build` comes with the test extra")
    try:
        import hatchling  # noqa: F401
    except ImportError:  # pragma: no cover - a venv not made by scripts/bootstrap.sh
        pytest.fail("hatchling is missing: scripts/bootstrap.sh installs it for --no-isolation builds")
    outdir = tmp_path_factory.mktemp("dist")
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)],
        cwd=outdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"python -m build failed:\n{done.stdout}\n{done.stderr}"
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return Dists(sdist=sdist, wheel=wheel)


@pytest.fixture(scope="module")
def installed(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> InstalledVenv:
    base = tmp_path_factory.mktemp("wheel-venv")
    root = base / "venv"
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    python = root / "bin" / "python"
    site_packages = Path(
        subprocess.run(  # noqa: S603
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    # The test venv's pip installs into the new venv (pip --python), without dependencies.
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(dists.wheel),
        ],
        check=True,
        timeout=300,
    )
    # Airflow and the other dependencies: the test venv's site-packages, after the venv's own.
    (site_packages / "_test_venv_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    workdir = base / "work"
    workdir.mkdir()
    airflow_home = base / "airflow_home"
    airflow_home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "PYTEST", "COV_"))
    }
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(workdir),
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONNOUSERSITE="1",
    )
    return InstalledVenv(root=root, python=python, site_packages=site_packages, workdir=workdir, env=env)


def test_wheel_holds_the_package_py_typed_and_the_entry_point_and_no_tests(dists: Dists) -> None:
    assert dists.wheel.name == f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = wheel.namelist()
        dist_info = f"{PACKAGE}-{VERSION}.dist-info"
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {PACKAGE, dist_info}
    for module in ("__init__.py", "py.typed", "provider_info.py", "statuses.py", "hooks/portkey.py"):
        assert f"{PACKAGE}/{module}" in names
    assert not [name for name in names if "/tests/" in name or name.startswith("tests/")]
    assert not [name for name in names if name.endswith((".pyc", ".pyo")) or "__pycache__" in name]
    assert "[apache_airflow_provider]" in entry_points
    assert ENTRY_POINT in entry_points.replace("  ", " ")
    assert metadata["Name"] == DIST_NAME
    assert metadata["Version"] == VERSION


def test_wheel_requires_what_pyproject_declares(dists: Dists) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    with zipfile.ZipFile(dists.wheel) as wheel:
        metadata = Parser().parsestr(wheel.read(f"{PACKAGE}-{VERSION}.dist-info/METADATA").decode())
    required = {str(Requirement(line)) for line in metadata.get_all("Requires-Dist") or [] if ";" not in line}
    assert required == {str(Requirement(line)) for line in declared}


def test_sdist_holds_readme_pyproject_and_the_package(dists: Dists) -> None:
    assert dists.sdist.name == f"{PACKAGE}-{VERSION}.tar.gz"
    prefix = f"{PACKAGE}-{VERSION}"
    with tarfile.open(dists.sdist) as sdist:
        names = set(sdist.getnames())
    for path in ("README.md", "pyproject.toml", "PKG-INFO"):
        assert f"{prefix}/{path}" in names
    for module in ("__init__.py", "py.typed", "provider_info.py", "statuses.py", "hooks/portkey.py"):
        assert f"{prefix}/{PACKAGE}/{module}" in names
    assert not [name for name in names if "/node_modules/" in name or "/.venv" in name]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_new_venv_imports_the_provider_from_the_wheel_not_the_source_tree(
    installed: InstalledVenv,
) -> None:
    code = (
        "import json, os, sys, importlib.metadata as md\n"
        f"import {PACKAGE}, {PACKAGE}.provider_info\n"
        f"dist = md.distribution({DIST_NAME!r})\n"
        "(ep,) = [ep for ep in md.entry_points(group='apache_airflow_provider')"
        f" if ep.dist.name == {DIST_NAME!r}]\n"
        "print(json.dumps({\n"
        f"    'file': {PACKAGE}.__file__,\n"
        "    'dist': str(dist.locate_file('')),\n"
        "    'ep_dist': str(ep.dist.locate_file('')),\n"
        "    'ep': ep.value,\n"
        "    'cwd': os.getcwd(),\n"
        "    'path': sys.path,\n"
        "    'prefix': sys.prefix,\n"
        f"    'info': {PACKAGE}.provider_info.get_provider_info()['package-name'],\n"
        "}))\n"
    )
    seen = json.loads(installed.run("-c", code).stdout)
    assert Path(seen["file"]).is_relative_to(installed.site_packages)
    assert Path(seen["dist"]) == installed.site_packages
    assert Path(seen["ep_dist"]) == installed.site_packages
    assert seen["ep"] == f"{PACKAGE}.provider_info:get_provider_info"
    assert Path(seen["prefix"]) == installed.root
    assert not Path(seen["cwd"]).is_relative_to(ROOT)
    assert str(ROOT) not in seen["path"]
    assert "" not in seen["path"] or Path(seen["cwd"]) != ROOT
    assert seen["info"] == DIST_NAME


def test_airflow_providers_list_shows_the_installed_provider(installed: InstalledVenv) -> None:
    rows = installed.airflow_json("providers", "list")
    (row,) = [row for row in rows if row["package_name"] == DIST_NAME]
    assert row["version"] == VERSION


def test_airflow_providers_hooks_shows_the_portkey_connection_type(installed: InstalledVenv) -> None:
    rows = installed.airflow_json("providers", "hooks")
    (row,) = [row for row in rows if row["connection_type"] == "portkey"]
    assert row["class"] == f"{PACKAGE}.hooks.portkey.PortkeyHook"
    assert row["package_name"] == DIST_NAME
    assert row["conn_id_attribute_name"] == "portkey_conn_id"


def test_airflow_loads_the_hook_of_the_portkey_connection_type_from_the_wheel(
    installed: InstalledVenv,
) -> None:
    code = (
        "import json, sys\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "manager = ProvidersManager()\n"
        "hook = manager.hooks['portkey']\n"
        "provider = manager.providers[hook.package_name]\n"
        "print(json.dumps({\n"
        "    'class': hook.hook_class_name,\n"
        "    'package': hook.package_name,\n"
        "    'version': provider.version,\n"
        "    'file': sys.modules[hook.hook_class_name.rpartition('.')[0]].__file__,\n"
        "}))\n"
    )
    stdout = installed.run("-c", code).stdout
    seen = json.loads(stdout.strip().splitlines()[-1])
    assert seen["class"] == f"{PACKAGE}.hooks.portkey.PortkeyHook"
    assert (seen["package"], seen["version"]) == (DIST_NAME, VERSION)
    assert Path(seen["file"]).is_relative_to(installed.site_packages)
