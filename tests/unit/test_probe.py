"""What the probe reads from a system Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from basefactory.platforms.fingerprint import PROBE_SCRIPT, PROBE_VERSION
from basefactory.platforms.probe import probe


class Engine:
    """What `docker run BASE python -c PROBE` printed."""

    def __init__(self, output: str) -> None:
        self.output = output

    def run(self, ref: str, argv: list[str], **kwargs: Any) -> Any:
        return SimpleNamespace(returncode=0, output="pip noise\n" + self.output, tail="")

    def image_id(self, ref: str) -> str:
        return "sha256:b1"


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
    # where the file is: the factory's images give it to uv as UV_CONSTRAINT
    assert found["pip_constraint_files"] == [str(tmp_path / "constraint.txt")]
    fp = probe(Engine(out.stdout), "p", "base:1")  # type: ignore[arg-type]
    assert fp.probe_version == PROBE_VERSION and fp.base_digest == "sha256:b1"
    assert fp.pip_constraint_files == (str(tmp_path / "constraint.txt"),)
    fp = fp.model_copy(update={"distributions": {"torch": "2.13.0a0+abc.nv25.10"}})
    # what the constraint file pins and the base does not ship keeps its pin
    assert fp.constraints() == "numpy==1.26.4\ntorch==2.13.0a0+abc.nv25.10\n"
