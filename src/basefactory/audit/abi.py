"""The ABI audit: every extension module loads against the libraries of the image it
is in (see abi_script.py, which runs inside the container). Its report becomes an
`abi-audit` proof; a failure refuses the push or the upload, naming the distribution,
the module and the symbol or library, and what to do."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from basefactory.adapters.docker import Docker
from basefactory.audit.allow import AllowedModule
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs import Kind, Proof, Subject

SCRIPT = Path(__file__).with_name("abi_script.py")
MARK = "BASEFACTORY-ABI "
FIX = ("build it here against this torch with a recipe (recipes/*.toml), or pin a version"
       " built for this torch")


@dataclass(frozen=True)
class AbiReport:
    modules: int
    failures: list[dict[str, Any]]
    host_provided: list[dict[str, Any]] = field(default_factory=list)
    python: str = ""
    allowed: list[dict[str, Any]] = field(default_factory=list)  # failures the image allows

    def allowing(self, allow: Sequence[AllowedModule]) -> AbiReport:
        """Move the failures an allowance covers (its module, failing for the reason it
        names) to `allowed`, each with its reason; any other failure stays."""
        still, allowed = [], list(self.allowed)
        for f in self.failures:
            covering = next((a for a in allow if a.covers(f)), None)
            if covering is None:
                still.append(f)
            else:
                allowed.append({**f, "allowed_because": covering.reason})
        return replace(self, failures=still, allowed=allowed)

    @property
    def passed(self) -> bool:
        return not self.failures

    def evidence(self) -> dict[str, Any]:
        return {"modules": self.modules, "failures": self.failures,
                "host_provided": self.host_provided, "allowed": self.allowed,
                "python": self.python}

    def proof(self, subject: Subject, *, inputs: str) -> Proof:
        return Proof.new(Kind.ABI_AUDIT, subject, inputs=inputs, passed=self.passed,
                         evidence=self.evidence())

    def lines(self) -> list[str]:
        out = []
        for f in self.failures:
            what = (f"undefined symbol {f['symbol']}" if f.get("symbol") else
                    f"missing library {f['library']}" if f.get("library") else f["error"])
            out.append(f"{f.get('dist') or 'no distribution'}: {f['module']}: {what}")
        return out


def parse(output: str) -> AbiReport | None:
    line = next((x for x in output.splitlines() if x.startswith(MARK)), None)
    if line is None:
        return None
    data = json.loads(line.removeprefix(MARK))
    return AbiReport(int(data["modules"]), list(data["failures"]),
                     list(data.get("host_provided") or []), str(data.get("python", "")))


def audit_image(docker: Docker, ref: str, *, work: Path, log_file: Path | None = None,
                dists: tuple[str, ...] = (), allow: Sequence[AllowedModule] = ()) -> AbiReport:
    """Run the audit in a fresh container of `ref` (no network: loading needs none); the
    failures `allow` covers are moved to the report's `allowed`."""
    argv = ["python3", f"/abi/{SCRIPT.name}"]
    for d in dists:
        argv += ["--dist", d]
    result = docker.run_script(ref, argv, files={SCRIPT.name: SCRIPT}, folder=work / "abi",
                               mount="/abi", log_file=log_file, network="none")
    report = parse(result.output)
    if report is None or result.returncode != 0:
        raise TestFailed(f"the ABI audit could not run in {ref} (exit {result.returncode}):"
                         f"\n{result.tail}", hint="the image needs a python3 on its PATH")
    return report.allowing(allow)


def require_clean(report: AbiReport, where: str, *, refused: str,
                  allow_empty: bool = False) -> None:
    """Raise unless every module loaded. An image with no extension module at all is
    refused too (its audit looked in the wrong place); a pure-Python wheel has none."""
    if report.modules == 0 and not allow_empty:
        raise TestFailed(f"the ABI audit of {where} found no extension module to check;"
                         f" {refused}", hint="is site-packages where Python looks for it?")
    if report.failures:
        detail = "\n".join(f"    {line}" for line in report.lines())
        raise TestFailed(
            f"the ABI audit of {where}: {len(report.failures)} of {report.modules} extension"
            f" modules do not load; {refused}:\n{detail}", hint=FIX)
