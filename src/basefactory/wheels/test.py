"""Test a wheel before it is published: a fresh container of the platform's base installs
it (dependencies from the index, the base's distributions as constraints), runs the
recipe's test command, and proves torch's version and files were not touched."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from basefactory.adapters.docker import Docker
from basefactory.audit.abi import SCRIPT as ABI_SCRIPT
from basefactory.audit.abi import parse as parse_abi
from basefactory.audit.abi import require_clean
from basefactory.plumbing import network
from basefactory.plumbing.digest import file_sha256
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs import Kind, Proof, Subject
from basefactory.wheels.recipe import Recipe
from basefactory.wheels.torch_state import CHANGED as TORCH_CHANGED

TORCH_STATE_SCRIPT = Path(__file__).with_name("torch_state.py")



def run_test(
    docker: Docker, recipe: Recipe, wheel: Path, *, platform: str, base_ref: str,
    base_digest: str, constraints: str, index_url: str, work: Path, log_file: Path,
) -> Proof:
    files: dict[str, Path | str] = {wheel.name: wheel, "constraints.txt": constraints,
             "torch_state.py": TORCH_STATE_SCRIPT, "abi.py": ABI_SCRIPT,
             "test.sh": script(recipe, wheel.name, index_url)}
    started = time.monotonic()
    result = network.retrying(
        lambda: docker.run_script(base_ref, ["sh", "/bf/test.sh"], files=files,
                                  folder=work / "test", log_file=log_file,
                                  env={"PIP_DEFAULT_TIMEOUT": "120",
                                       "PIP_DISABLE_PIP_VERSION_CHECK": "1"}),
        what=f"the test of {wheel.name}", index=index_url,
        unanswered=lambda r: r.output if r.returncode != 0 and network.unreachable(r.output)
        else None)
    duration = round(time.monotonic() - started, 1)
    if result.returncode == TORCH_CHANGED:
        raise TestFailed(
            f"installing {wheel.name} on {platform} changed torch; nothing was uploaded.\n"
            f"{result.tail}\n  full log: {log_file}",
            hint="a requirement of the wheel pulls another torch: pin it in the recipe's"
            " test.requires or fix the package's metadata",
        )
    if result.returncode != 0:
        raise TestFailed(
            f"the test of {recipe.name} on {platform} failed (exit {result.returncode});"
            f" nothing was uploaded:\n{result.tail}\n  full log: {log_file}",
            hint="run the recipe's test command in the platform's base to reproduce it",
        )
    report = parse_abi(result.output)
    if report is None:
        raise TestFailed(f"the ABI audit of {wheel.name} printed no report; nothing was"
                         f" uploaded:\n{result.tail}\n  full log: {log_file}")
    require_clean(report, f"{wheel.name} in the base of {platform}",
                  refused="nothing was uploaded", allow_empty=True)
    sha256 = file_sha256(wheel)
    # reaching here means the script's torch comparison and the test command both passed
    torch_line = next((x for x in result.output.splitlines()
                       if x.startswith("basefactory: torch unchanged: ")), "")
    return Proof.new(
        Kind.WHEEL_TEST,
        Subject(platform=platform, wheel=wheel.name, wheel_sha256=sha256),
        inputs=sha256, passed=True,
        evidence={"recipe": recipe.name, "command": recipe.test.command,
                  "test_requires": list(recipe.test.requires),
                  "base_image": base_ref, "base_digest": base_digest,
                  # "<version> <files> <sha256 of their state>", equal before and after
                  "torch": torch_line.removeprefix("basefactory: torch unchanged: ")
                  .removeprefix("torch "),
                  "duration_s": duration, "log_tail": result.tail.splitlines()[-8:],
                  "abi_audit": report.evidence()},
    )


def subshell(command: str) -> str:
    """A user's command as one step of a `set -e` script: in a subshell, so that any
    failure fails the script. `sh -e` ignores a failure inside `a && b` when it is not
    the last command: a test written `check && run` that failed at `check` passed."""
    return f"(\n{command}\n)"


def script(recipe: Recipe, wheel_name: str, index_url: str) -> str:
    extra = " ".join(shlex.quote(r) for r in recipe.test.requires)
    return f"""set -e
python /bf/torch_state.py > /tmp/torch-before
pip install --index-url {shlex.quote(index_url)} -c /bf/constraints.txt /bf/{shlex.quote(wheel_name)} {extra}
python /bf/torch_state.py check /tmp/torch-before
cd /tmp
{subshell(recipe.test.command)}
echo "basefactory: test passed"
python /bf/abi.py --dist {shlex.quote(recipe.distribution)}
"""
