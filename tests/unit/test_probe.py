"""Which of a base's distributions no index serves (NVIDIA's pre-release builds), and what
the probe reads from a system Python: pure logic over a stand-in index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from basefactory.platforms.fingerprint import PROBE_SCRIPT, Fingerprint
from basefactory.platforms.probe import unindexed


class Index:
    """What the platform's simple pages list, and which projects were asked for."""

    def __init__(self, listed: dict[str, set[str]]) -> None:
        self.listed, self.asked = listed, []

    def simple_versions(self, index: str, project: str) -> set[str]:
        self.asked.append(project)
        return self.listed.get(project, set())


def test_only_vendor_builds_that_the_index_lacks_are_unindexed() -> None:
    index = Index({"torch": {"2.13.0+cpu"}, "numpy": {"2.4.6"}})
    dists = {"torch": "2.13.0a0+cf30153c4c.nv25.10", "numpy": "2.4.6",
             "transformer-engine": "2.8.0+5ba5d9e", "pytorch-triton": "3.5.0+git8b0c4bbc"}
    found = unindexed(index, "factory/ngc", dists)  # type: ignore[arg-type]
    assert found == {"torch": "2.13.0a0+cf30153c4c.nv25.10",
                     "transformer-engine": "2.8.0+5ba5d9e",
                     "pytorch-triton": "3.5.0+git8b0c4bbc"}
    assert "numpy" not in index.asked  # a final release is the mirror's: no lookup


def test_a_bootstrapped_torch_imported_into_its_index_is_served() -> None:
    index = Index({"torch": {"2.13.0+cpu"}})
    assert unindexed(index, "factory/cpu", {"torch": "2.13.0+cpu"}) == {}  # type: ignore[arg-type]


def test_the_probe_reads_the_bases_constraint_file_and_python(tmp_path: Path) -> None:
    """The probe script run by this interpreter with a stand-in torch module and an NGC
    constraint file: its pins are read (comments, spaces and === included)."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "__version__ = '2.13.0a0+abc.nv25.10'\n"
        "class version: cuda = None\n"
        "class _C: _GLIBCXX_USE_CXX11_ABI = True\n")
    (tmp_path / "constraint.txt").write_text(
        "# NGC\ntorch==2.13.0a0+abc.nv25.10\nNumPy === 1.26.4  # pinned\n\n-e foo\n")
    out = subprocess.run([sys.executable, "-c", PROBE_SCRIPT], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path),
                              "PIP_CONSTRAINT": str(tmp_path / "constraint.txt")}, check=True)
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["pip_constraints"] == {"torch": "2.13.0a0+abc.nv25.10", "numpy": "1.26.4"}
    assert found["site_packages"] == str(tmp_path)
    assert found["python_executable"] == sys.executable
    fp = Fingerprint(platform="p", base_image="b", base_digest="d", probed_at="t",
                     **{**found, "distributions": {"torch": "2.13.0a0+abc.nv25.10"}})
    # what the constraint file pins and the base does not ship keeps its pin
    assert fp.constraints() == "numpy==1.26.4\ntorch==2.13.0a0+abc.nv25.10\n"
