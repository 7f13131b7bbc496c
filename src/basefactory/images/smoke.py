"""The smoke test an image passes before any tag moves: every promised package imports,
`pip check` is clean, torch is the parent's (or absent from a torch-free tier), and the
image fits its size budget. Its output is the image's manifest: every installed
distribution with its version and size, which the catalog shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basefactory.adapters.docker import Docker
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs import Kind, Proof, Subject
from basefactory.wheels.test import subshell

SMOKE = r"""
import importlib, importlib.metadata as md, json, os, re, sys
def canon(name): return re.sub(r"[-_.]+", "-", name).lower()
promised = json.loads(sys.argv[1])
skip = {"tests", "test", "docs", "examples", "benchmarks", "scripts"}
modules = {}
for module, dists in md.packages_distributions().items():
    for dist in dists:
        modules.setdefault(canon(dist), set()).add(module)
imported, failed = [], {}
for dist in promised:
    for module in sorted(modules.get(dist, ())):
        if module.startswith("_") or module in skip or not module.isidentifier():
            continue
        try:
            importlib.import_module(module)
            imported.append(module)
        except Exception as exc:  # report every failure, not only the first
            failed[module] = f"{type(exc).__name__}: {exc}"
    if dist not in modules:
        failed[dist] = "not installed"
manifest = []
for d in md.distributions():
    size = 0
    for f in d.files or []:
        try:
            size += os.path.getsize(f.locate())
        except OSError:
            pass
    manifest.append({"name": d.metadata["Name"], "version": d.version, "size": size})
try:
    torch = md.version("torch")
except md.PackageNotFoundError:
    torch = None
print("BASEFACTORY-SMOKE " + json.dumps({"imported": imported, "failed": failed,
      "torch": torch, "manifest": sorted(manifest, key=lambda m: m["name"].lower())}))
"""


OUTPUT_LINES = 10
# echoed before the image's own command, so that its record keeps what that command
# printed and not pip check's line or the import checks' warnings
COMMAND_MARK = "BASEFACTORY-SMOKE-COMMAND"


@dataclass(frozen=True)
class SmokeResult:
    imported: list[str]
    torch: str | None
    size: int
    manifest: list[dict[str, Any]]
    output: list[str]  # what the image's own smoke command printed, its last lines

    def proof(self, *, image: str, platform: str, inputs: str) -> Proof:
        # only a smoke test that passed returns a result: every failure raised TestFailed
        return Proof.new(Kind.SMOKE, Subject(platform=platform, image=image, image_digest=inputs),
                         inputs=inputs, passed=True,
                         evidence={"imported": self.imported, "torch": self.torch,
                                   "size": self.size, "pip_check": "ok",
                                   "output": self.output})


def smoke_test(
    docker: Docker, ref: str, *, image: str, platform: str, promised: list[str],
    torch: str | None, budget_mb: int, command: str | None, work: Path, log_file: Path,
) -> SmokeResult:
    script = ["set -e", f"python /smoke/smoke.py '{json.dumps(sorted(promised))}'",
              "python -m pip check"]
    if command:
        script += [f"echo {COMMAND_MARK}", subshell(command)]
    result = docker.run_script(ref, ["sh", "/smoke/smoke.sh"],
                               files={"smoke.py": SMOKE, "smoke.sh": "\n".join(script) + "\n"},
                               folder=work / "smoke", mount="/smoke", log_file=log_file,
                               network="none")
    where = f"image {image} on {platform}"
    line = next((x for x in result.output.splitlines() if x.startswith("BASEFACTORY-SMOKE ")), None)
    if line is None:
        raise TestFailed(f"the smoke test of {where} failed (exit {result.returncode}); nothing"
                         f" was pushed:\n{result.tail}\n  full log: {log_file}")
    found = json.loads(line.removeprefix("BASEFACTORY-SMOKE "))
    if found["failed"]:
        detail = "\n".join(f"    {m}: {e}" for m, e in found["failed"].items())
        raise TestFailed(f"{where}: promised packages do not import; nothing was pushed:\n{detail}",
                         hint="add what they need to requirements.in or apt")
    if result.returncode != 0:
        raise TestFailed(f"{where}: `pip check` or the smoke command failed (exit"
                         f" {result.returncode}); nothing was pushed:\n{result.tail}\n"
                         f"  full log: {log_file}")
    if found["torch"] != torch:
        raise TestFailed(f"{where} has torch {found['torch']}, its parent {torch}; nothing was"
                         " pushed", hint="a requirement replaced torch: pin it to the platform's")
    size = int(docker.image_inspect(ref)["Size"])
    if size > budget_mb * 1_000_000:
        raise TestFailed(f"{where} is {size / 1e6:.0f} MB, over its budget of {budget_mb} MB;"
                         " nothing was pushed",
                         hint="trim it, or raise size_budget_mb in its image.toml")
    # the proof of what the smoke command ran is what it printed
    printed = result.output.rpartition(f"{COMMAND_MARK}\n")[2].splitlines() if command else []
    return SmokeResult(found["imported"], found["torch"], size, found["manifest"],
                       printed[-OUTPUT_LINES:])
