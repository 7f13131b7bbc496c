"""The scripts that run inside an image (`fit_script.py`, `sbom_script.py`), run here on a
Python of this host: the fit script in a fresh venv that stands in for the image, against
a local PEP 503 folder that stands in for the index (pip reads file:// indexes offline).
The rules that judge their records are tested in test_fit.py and test_sbom.py; these
tests check what the scripts record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.images import fit_script, sbom_script
from basefactory.images.sbom import inventory
from tests.helpers import HostEngine, tiny_wheel

# the machine's pip.conf (find-links, extra indexes) stays out: the file index is the index
PIP_ALONE = {**{k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"},
             "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
             "PIP_NO_CACHE_DIR": "1"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with pip (ensurepip: no network), made once per module."""
    venv = tmp_path_factory.mktemp("template") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv


@pytest.fixture()
def image(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template venv: the Python of the "image" (run as `python -m
    pip`, so that the copied scripts' shebangs do not matter)."""
    venv = tmp_path / "image"
    shutil.copytree(template, venv, symlinks=True)
    return venv / "bin" / "python"


@pytest.fixture()
def index(tmp_path: Path) -> str:
    """tiny-lib 1.0 and 2.0, and tiny-app 1.0 which needs tiny-lib>=2."""
    root = tmp_path / "simple"
    tiny_wheel(root / "tiny-lib", "tiny-lib", "1.0", body="VERSION = 1\n")
    tiny_wheel(root / "tiny-lib", "tiny-lib", "2.0", body="VERSION = 2\n")
    tiny_wheel(root / "tiny-app", "tiny-app", "1.0", requires=["tiny-lib>=2"])
    # pip reads a file:// index folder's index.html, as a server's simple pages
    for project in root.iterdir():
        links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in project.glob("*.whl"))
        (project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return root.as_uri()


def fit(python: Path, tmp_path: Path, index: str, spec: str, test: str,
        *extra: str) -> dict:  # type: ignore[type-arg]
    (tmp_path / "test.sh").write_text(test)
    out = subprocess.run(
        [str(python), fit_script.__file__, "--index-url", index, "--spec", spec,
         "--test-file", str(tmp_path / "test.sh"), *extra],
        capture_output=True, text=True, timeout=180,
        env={**PIP_ALONE, "PATH": f"{python.parent}:{os.environ['PATH']}"})
    line = next(x for x in out.stdout.splitlines() if x.startswith("BASEFACTORY-FIT "))
    return json.loads(line.removeprefix("BASEFACTORY-FIT "))  # type: ignore[no-any-return]


def test_the_fit_script_installs_as_the_readme_says_and_records_what_changed(
        image: Path, index: str, tmp_path: Path) -> None:
    record = fit(image, tmp_path, index, "tiny-app==1.0",
                 "python -c 'import tiny_lib, tiny_app; assert tiny_lib.VERSION == 2'")
    assert record["resolution"]["refuse"] is False
    assert {(w["name"], w["version"]) for w in record["resolution"]["would_install"]} == {
        ("tiny-app", "1.0"), ("tiny-lib", "2.0")}
    assert record["install"]["rc"] == 0 and record["test"]["rc"] == 0
    assert "tiny-lib" not in record["before"]
    assert record["after"]["tiny-lib"]["version"] == "2.0"
    assert record["after"]["tiny-app"]["size"] > 0
    assert record["abi"] is None and record["torch_before"] is None


def test_a_resolution_that_replaces_an_installed_distribution_installs_nothing(
        image: Path, index: str, tmp_path: Path) -> None:
    subprocess.run([str(image), "-m", "pip", "install", "--quiet", "--index-url", index,
                    "tiny-lib==1.0"], check=True, env=PIP_ALONE)
    record = fit(image, tmp_path, index, "tiny-app==1.0", "exit 0")
    assert record["resolution"]["refuse"] is True
    assert record["install"] == {"rc": None, "tail": [], "skipped": "refused by the resolution"}
    assert record["after"] == record["before"] and record["test"] is None
    installed = subprocess.run([str(image), "-c", "import tiny_lib; print(tiny_lib.VERSION)"],
                               capture_output=True, text=True).stdout.strip()
    assert installed == "1"


def test_a_failing_test_command_is_recorded_with_its_exit(image: Path, index: str,
                                                        tmp_path: Path) -> None:
    record = fit(image, tmp_path, index, "tiny-lib==2.0", "echo boom; exit 4",
                 "--no-resolve")
    assert record["resolution"] is None and record["install"]["rc"] == 0
    assert record["test"] == {"rc": 4, "tail": ["boom"]}


def test_a_spec_the_index_lacks_records_the_failed_resolution(image: Path, index: str,
                                                             tmp_path: Path) -> None:
    record = fit(image, tmp_path, index, "tiny-lib==9.0", "exit 0")
    assert record["resolution"]["rc"] != 0 and record["resolution"]["refuse"] is False
    assert record["install"]["rc"] != 0 and record["test"] is None


def test_canon_is_pep503() -> None:
    assert fit_script.canon("Foo_Bar.baz") == "foo-bar-baz"


def test_the_sbom_script_lists_each_distribution_once_with_its_build_tag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a second packaging, ahead of the venv's on sys.path (PYTHONPATH): it is the one that
    # imports, so it is the one listed, and the venv's copy is not listed again
    later = tmp_path / "ahead"
    for version in ("9.9",):
        info = later / f"packaging-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: packaging\nVersion: {version}\n")
    built = tmp_path / "built" / "tagged_pkg-1.0.dist-info"
    built.mkdir(parents=True)
    (built / "METADATA").write_text("Metadata-Version: 2.1\nName: tagged-pkg\nVersion: 1.0\n"
                                    "License: MIT\nClassifier: License :: OSI Approved :: MIT"
                                    " License\n")
    (built / "WHEEL").write_text("Wheel-Version: 1.0\nBuild: 1795417731.fd435febfb25\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'built'}:{later}")
    inv = inventory(HostEngine(), "factory/api:p1", work=tmp_path / "w")  # type: ignore[arg-type]
    rows = {r["name"].lower(): r for r in inv.python}
    assert rows["tagged-pkg"]["build"] == "1795417731.fd435febfb25"
    assert rows["tagged-pkg"]["license"] == "MIT"
    assert rows["tagged-pkg"]["license_classifiers"] == ["MIT License"]
    assert rows["packaging"]["version"] == "9.9"
    assert [r["name"].lower() for r in inv.python].count("packaging") == 1
    assert set(inv.os) == {"ID", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME"}
    assert inv.debian is None or all(set(r) == {"name", "version", "arch", "source"}
                                     for r in inv.debian)


def test_the_sbom_script_reads_os_release_and_keeps_short_license_fields() -> None:
    # the module's functions, called here: the host's own release file and distributions
    assert sbom_script.os_release()["ID"] != ""
    long_license = [r for r in sbom_script.python_distributions() if "\n" in r["license"]]
    assert long_license == []
