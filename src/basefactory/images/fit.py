"""Fit tests: does this wheel go into this image? The only evidence the catalog accepts
for "these go together".

For each published image (by its registry digest) and the newest tested wheel of each
project on its platform's indexes that the image does not already include, a fresh
container of the image installs the wheel as users are told to (`pip install
--index-url <platform index> NAME==VERSION`), then fit_script.py records what changed.
`verdict` reads that record:

    fits           torch untouched, nothing of the image replaced, no torch added to a
                   torch-less image, the recipe's test passes, the ABI audit of every
                   added or changed distribution passes
    does not fit   the first of those that failed, with what the install added

The outcome is a `fit` proof attached to the wheel's file in devpi (subject: the wheel
file and the image's digest). Content-addressed: a pair whose image digest and wheel file
are unchanged already has its proof and is not tested again.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.audit.abi import SCRIPT as ABI_SCRIPT
from basefactory.audit.abi import AbiReport
from basefactory.audit.allow import AllowedModule
from basefactory.plumbing import digest, log, network
from basefactory.plumbing.errors import ServiceError
from basefactory.proofs import Kind, Proof, Subject, store_devpi
from basefactory.proofs.read import first, proven
from basefactory.refs import Labels, common_index, platform_index, repository
from basefactory.session import Session
from basefactory.wheels.recipe import Recipe
from basefactory.wheels.relabel import pip_order
from basefactory.wheels.test import TORCH_STATE_SCRIPT

SCRIPT = Path(__file__).with_name("fit_script.py")
MARK = "BASEFACTORY-FIT "
# Bumped when what a fit test checks changes: older records then no longer count.
# 2: no ABI audit, no fit; allowances name what they expect; pip's resolution first.
RULES = 2
# What CUDA-less or torch-less images must not gain from a wheel: torch and NVIDIA's
# CUDA libraries (the lean tier exists to keep them out).
TORCH_STACK = re.compile(r"^(torch|triton|nvidia-.*)$")


@dataclass(frozen=True)
class Target:
    """One published image on one platform, as a fit test sees it."""

    image: str
    platform: str
    ref: str  # REGISTRY/factory/<image>@sha256:...
    digest: str  # its registry manifest digest
    included: dict[str, str]  # recipe wheels it ships: distribution -> version
    allow: tuple[AllowedModule, ...] = ()  # its [[audit.allow]] (its parents' included)


@dataclass(frozen=True)
class Candidate:
    """A wheel to fit: the file pip picks for NAME==VERSION on the platform's index."""

    file: ReleaseFile
    index: str
    recipe: Recipe | None


@dataclass(frozen=True)
class Pair:
    target: Target
    wheel: Candidate
    proof: Proof | None  # its fit proof for these inputs, if one exists

    @property
    def inputs(self) -> str:
        return fit_inputs(self.target, self.wheel)


def fit_inputs(target: Target, wheel: Candidate) -> str:
    recipe = wheel.recipe
    return digest.of(RULES, target.digest, wheel.file.sha256,
                     recipe.test.command if recipe else "",
                     sorted(a.key() for a in target.allow),
                     [a.key() for a in recipe.audit.allow] if recipe else [])


# --- which pairs ----------------------------------------------------------------------


def candidates(session: Session, platform: str, recipes: dict[str, Recipe]
               ) -> list[Candidate]:
    """The newest tested wheel of each project on the platform's index and the common
    index: what `pip install NAME` gets there. Imported wheels (torch, NVIDIA's) carry no
    wheel test, so only the factory's recipe wheels are candidates."""
    by_dist = {r.distribution: r for r in recipes.values()}
    newest: dict[str, tuple[tuple[Any, ...], Candidate]] = {}
    for index in (common_index(session.factory), platform_index(session.factory, platform)):
        for project in session.devpi.projects(index):
            for f in session.devpi.release_files(index, project):
                if not f.filename.endswith(".whl"):
                    continue
                if not proven(session.proofs.wheel(f), Kind.WHEEL_TEST):
                    continue
                key = pip_order(f.filename)
                name = canonicalize_name(f.project)
                if name not in newest or key > newest[name][0]:
                    newest[name] = (key, Candidate(f, index, by_dist.get(name)))
    return [c for _, c in sorted(newest.values(), key=lambda x: x[1].file.filename)]


def pairs(session: Session, targets: list[Target], wheels: list[Candidate]) -> list[Pair]:
    """Every (image, wheel) pair to prove, with its proof where one exists already. A
    wheel the image ships at that version is left out: its smoke test and ABI audit are
    that pair's proof."""
    found = []
    for target in targets:
        for wheel in wheels:
            name = canonicalize_name(wheel.file.project)
            if target.included.get(name) == wheel.file.version:
                continue
            inputs = fit_inputs(target, wheel)
            existing = [p for p in session.proofs.wheel(wheel.file)
                        if p.kind == Kind.FIT and p.inputs == inputs]
            found.append(Pair(target, wheel, first(existing, Kind.FIT)))
    return found


# --- the test -------------------------------------------------------------------------


def run_fit(session: Session, pair: Pair, *, work: Path, log_file: Path,
            resolve_first: bool = True) -> Proof:
    """Test one pair in a fresh container of the image and attach the proof to the wheel's
    file. Failures of the index (timeouts) are retried, then raised; they never become a
    "does not fit"."""
    target, wheel = pair.target, pair.wheel
    index_url = session.devpi.simple_url(platform_index(session.factory, target.platform))
    spec = f"{wheel.file.project}=={wheel.file.version}"
    test = (wheel.recipe.test.command if wheel.recipe else
            f"python -c 'import {_module_guess(wheel.file.project)}'")
    files: dict[str, Path | str] = {"fit.py": SCRIPT, "abi.py": ABI_SCRIPT,
                                    "torch_state.py": TORCH_STATE_SCRIPT, "test.sh": test}
    argv = ["python", "/bf/fit.py", "--index-url", index_url, "--spec", spec,
            "--test-file", "/bf/test.sh", "--torch-state", "/bf/torch_state.py",
            "--abi", "/bf/abi.py", "--refuse-added", TORCH_STACK.pattern]
    if not resolve_first:
        argv.append("--no-resolve")
    started = time.monotonic()

    def once() -> dict[str, Any]:
        result = session.docker.run_script(target.ref, argv, files=files, folder=work,
                                           env={"PIP_DEFAULT_TIMEOUT": "120",
                                                "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                                           log_file=log_file)
        parsed = parse(result.output)
        if parsed is None:
            raise ServiceError(f"the fit test of {spec} in {target.ref} printed no record"
                               f" (exit {result.returncode}):\n{result.tail}\n"
                               f"  full log: {log_file}")
        return parsed

    def unanswered(found: dict[str, Any]) -> str | None:
        tail = "\n".join(found["install"]["tail"])
        return tail if found["install"]["rc"] != 0 and network.unreachable(tail) else None

    record = network.retrying(once, what=f"the fit test of {spec} in {target.image}",
                              index=index_url, unanswered=unanswered)
    install = record["install"]
    allow = list(target.allow) + (list(wheel.recipe.audit.allow) if wheel.recipe else [])
    outcome = verdict(record, allow=allow)
    proof = Proof.new(
        Kind.FIT,
        Subject(platform=target.platform, wheel=wheel.file.filename,
                wheel_sha256=wheel.file.sha256, image=target.image, image_digest=target.digest),
        inputs=pair.inputs, passed=outcome.fits,
        evidence={"reason": outcome.reason, "added": outcome.added,
                  "added_mb": outcome.added_mb, "replaced": outcome.replaced,
                  "command": f"pip install --index-url {index_url} {spec}",
                  "image_ref": target.ref, "index": wheel.index,
                  "test": record.get("test"), "abi_audit": outcome.abi,
                  # pip's resolution (--dry-run --report): what it would install, and
                  # whether that alone refused the pair, nothing downloaded
                  "resolution": record.get("resolution"),
                  "install_tail": install["tail"][-8:], "rules": RULES,
                  "duration_s": round(time.monotonic() - started, 1)})
    store_devpi.attach(session.devpi, wheel.file.url, proof)
    shutil.rmtree(work, ignore_errors=True)
    return proof


def _module_guess(project: str) -> str:
    return canonicalize_name(project).replace("-", "_")


def parse(output: str) -> dict[str, Any] | None:
    line = next((x for x in output.splitlines() if x.startswith(MARK)), None)
    return None if line is None else dict(json.loads(line.removeprefix(MARK)))


# --- the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    fits: bool
    reason: str
    added: list[dict[str, Any]]  # {name, version, mb}
    added_mb: float
    replaced: list[dict[str, Any]]  # {name, before, after}
    abi: dict[str, Any] | None


def _mb(size: int) -> float:
    return round(size / 1e6, 1)


def verdict(record: dict[str, Any], *, allow: Sequence[AllowedModule] | None = None
            ) -> Outcome:
    """The rules of a fit, from what the container recorded; the first rule broken is the
    reason."""
    before: dict[str, dict[str, Any]] = record["before"]
    after: dict[str, dict[str, Any]] = record["after"]
    added = [{"name": n, "version": d["version"], "mb": _mb(d["size"])}
             for n, d in sorted(after.items()) if n not in before]
    replaced = [{"name": n, "before": d["version"],
                 "after": after[n]["version"] if n in after else None}
                for n, d in sorted(before.items())
                if n not in after or after[n]["version"] != d["version"]]
    added_mb = round(sum(a["mb"] for a in added), 1)

    def no(reason: str, abi: dict[str, Any] | None = None) -> Outcome:
        return Outcome(False, reason, added, added_mb, replaced, abi)

    resolution = record.get("resolution") or {}
    if resolution.get("refuse"):
        return _refused_by_resolution(before, resolution["would_install"])

    install = record["install"]
    if install["rc"] != 0:
        return no(f"pip install failed: {_last_error(install['tail'])}")
    torch_change = None
    if "torch" in before and record.get("torch_before") != record.get("torch_after"):
        torch_change = (before["torch"]["version"], after.get("torch", {}).get("version"))
    broken = _broken_rule(before, added, replaced, torch_change, "MB")
    if broken is not None:
        return no(broken)
    test = record.get("test") or {}
    if test.get("rc") != 0:
        return no(f"its test fails here: {_last_error(test.get('tail') or [])}")
    abi_data = record.get("abi")
    if abi_data is None:
        # no audit, no fit: nothing shows that what was installed loads against this torch
        # (the script audits whatever the install added or changed; nothing changed means
        # the wheel was already there, and an included wheel is proven by the image's own
        # smoke test and audit, not by a fit)
        return no("no ABI audit ran: the install added or changed nothing to audit")
    if "error" in abi_data:
        return no(f"the ABI audit did not run: {_last_error(abi_data['error'])}")
    report = AbiReport(int(abi_data["modules"]), list(abi_data["failures"]),
                       list(abi_data.get("host_provided") or []),
                       str(abi_data.get("python", ""))).allowing(allow or [])
    if not report.passed:
        return no(f"the ABI audit fails: {report.lines()[0]}", report.evidence())
    modules = report.modules
    return Outcome(True, f"installs with torch and every package of the image unchanged"
                   f" (adds {_n(len(added), 'package')}, {added_mb:g} MB); its test and the"
                   f" ABI audit of {_n(modules, 'new module')} pass", added, added_mb, replaced,
                   report.evidence())


def _refused_by_resolution(before: dict[str, dict[str, Any]],
                           would: list[dict[str, Any]]) -> Outcome:
    """The verdict on what pip's resolver said it would install, nothing installed: the
    same rules, in the same order, as after an install; sizes are download sizes."""
    added = [{"name": w["name"], "version": w["version"], "mb": w.get("download_mb") or 0.0}
             for w in would if w["name"] not in before]
    replaced = [{"name": w["name"], "before": before[w["name"]]["version"],
                 "after": w["version"]} for w in would if w["name"] in before]
    added_mb = round(sum(a["mb"] for a in added), 1)

    torch = next((r for r in replaced if r["name"] == "torch"), None)
    reason = _broken_rule(before, added, replaced,
                          (torch["before"], torch["after"]) if torch else None, "MB download")
    return Outcome(False, reason or "the resolution was refused", added, added_mb, replaced,
                   None)


def _broken_rule(before: dict[str, dict[str, Any]], added: list[dict[str, Any]],
                 replaced: list[dict[str, Any]], torch_change: tuple[str, str | None] | None,
                 unit: str) -> str | None:
    """The first install rule that what was (or would be) added and replaced breaks, in
    the order the rules are told: torch changed, torch's stack brought into an image
    without torch, anything the image had replaced. None: none broken."""
    if torch_change is not None:
        was, now = torch_change
        return (f"changes torch ({was} -> {now})" if now != was else
                f"reinstalls torch {was} (its files changed)")
    stack = [a for a in added if TORCH_STACK.match(a["name"])]
    if "torch" not in before and stack:
        mb = round(sum(a["mb"] for a in stack), 1)
        what = "torch" if any(a["name"] == "torch" for a in stack) else stack[0]["name"]
        return f"adds {what} ({mb:g} {unit}) to an image without torch"
    if replaced:
        shown = ", ".join(
            f"{r['name']} {r['before']} (reinstalled)" if r["after"] == r["before"] else
            f"{r['name']} {r['before']} -> {r['after'] or 'removed'}" for r in replaced[:3])
        more = f" and {len(replaced) - 3} more" if len(replaced) > 3 else ""
        return f"replaces {shown}{more}"
    return None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _last_error(tail: list[str]) -> str:
    """The line of a failed command's output that says why."""
    lines = [x.strip() for x in tail if x.strip()]
    for pattern in (r"^(ERROR|\w*Error|\w*Exception)\b", r"error", r"."):
        hit = next((x for x in reversed(lines) if re.search(pattern, x, re.I)), None)
        if hit is not None:
            return hit[:300]
    return "no output"


def log_line(pair: Pair, proof: Proof) -> str:
    verdict_ = "fits" if proof.passed else "does not fit"
    return (f"{pair.wheel.file.project} {pair.wheel.file.version} {verdict_} in"
            f" {pair.target.image} ({pair.target.platform}): {proof.evidence.get('reason')}")


# --- the publish step -----------------------------------------------------------------


def targets(session: Session, platform: str, images: list[tuple[str, str]],
            definitions: dict[str, Any], *, platform_images: bool = True) -> list[Target]:
    """The images to fit wheels into on one platform, each by its registry digest:
    `images` as (name, tag), and with `platform_images` the platform's base and slim image
    (the catalog lists them too). What an image includes is read from its labels."""

    factory = session.factory
    rows = [(n, platform) for n in ("base", "slim") if platform_images] + list(images)
    found = []
    for name, tag in rows:
        repo = repository(factory, name)
        manifest_digest = session.registry.digest(repo, tag)
        if manifest_digest is None:
            continue  # not in the registry (e.g. a platform without a slim image)
        labels = session.registry.labels(repo, manifest_digest)
        try:
            included = json.loads(labels.get(Labels.WHEELS) or "{}")
        except ValueError:
            included = {}
        definition = definitions.get(name)
        found.append(Target(
            name, platform, f"{factory.config.registry.address}/{repo}@{manifest_digest}",
            manifest_digest, {canonicalize_name(k): str(v) for k, v in included.items()},
            definition.audit.allow if definition is not None else ()))
    return found


def ensure_fit(session: Session, pair: Pair) -> tuple[Proof, bool]:
    """(its proof, whether it was tested now)."""
    if pair.proof is not None:
        return pair.proof, False
    target, wheel = pair.target, pair.wheel
    stem = f"{canonicalize_name(wheel.file.project)}-in-{target.image}-{target.platform}"
    work = session.factory.state_dir / "build" / "fits" / stem
    log_file = session.factory.logs_dir / "fits" / f"{stem}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.unlink(missing_ok=True)
    with log.phase(f"fit {wheel.file.project} {wheel.file.version} into {target.image}"
                  f" ({target.platform})"):
        proof = run_fit(session, pair, work=work, log_file=log_file)
    log.info(log_line(pair, proof))
    return proof, True
