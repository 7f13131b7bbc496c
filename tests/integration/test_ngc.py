"""An NVIDIA-PyTorch-shaped platform through the `image =` path, as a site that mirrors
nvcr.io declares it: the stand-in (standins/ngc-pytorch: a system Python, dist-packages,
torch relabelled 2.13.0a0+<commit>.nv25.10, PIP_CONSTRAINT) pulled, probed, torchsort's C++
extension compiled against its torch, cuda-deps built on it; and the seed's bug as a
regression test: pip and uv installing what requires torch leave NVIDIA's torch alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.adapters.tools import beside_python
from basefactory.catalog import views
from basefactory.catalog.snapshot import Snapshot
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all as build_images
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.platforms.publish import ensure_platform
from basefactory.proofs import Kind, store_labels
from basefactory.proofs.read import first
from basefactory.refs import platform_index, repository
from basefactory.session import Session
from basefactory.wheels.publish import WheelResult
from basefactory.wheels.publish import build_all as build_wheels
from basefactory.wheels.test import TORCH_STATE_SCRIPT
from tests.helpers import NGC, NGC_REPOSITORY, ROOT, wheelhouse


@pytest.fixture(scope="module")
def standin(session: Session) -> str:
    """The stand-in, built by the same script `make ngc-standin` runs, pushed to the
    test registry under the mirror path the test factory's platform names."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "standins" / "ngc-pytorch" / "build.py"),
         "--factory", str(session.factory.path), "--wheelhouse", str(wheelhouse())],
        capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ref = done.stdout.strip().splitlines()[-1]
    assert ref == f"{session.factory.config.registry.address}/{NGC_REPOSITORY}"
    return ref


@pytest.fixture(scope="module")
def ngc(session: Session, standin: str) -> Fingerprint:
    return ensure_platform(session, NGC).fingerprint


@pytest.fixture(scope="module")
def torchsort(session: Session, ngc: Fingerprint) -> WheelResult:
    [result] = build_wheels(session, ["torchsort"], [NGC])
    return result


@pytest.fixture(scope="module")
def cuda_deps(session: Session, ngc: Fingerprint, torchsort: WheelResult) -> ImageResult:
    [result] = build_images(session, ["cuda-deps"], [NGC])
    return result


def test_the_probe_sees_a_system_python_with_nvidias_torch(ngc: Fingerprint) -> None:
    assert ngc.torch.startswith("2.13.0a0+") and ngc.torch.endswith(".nv25.10"), ngc.torch
    assert ngc.torch_installed == ngc.torch  # NVIDIA's metadata and __version__ agree
    # pulled, and named by digest: the mirror's tag may move, this does not
    assert ngc.base_source and "/mirror/nvcr.io/nvidia/pytorch@sha256:" in ngc.base_source
    assert not ngc.in_venv
    assert ngc.python_executable.startswith("/usr/bin/python")
    assert ngc.site_packages == "/usr/local/lib/python3.11/dist-packages"
    # NGC's own constraint file was read, and its torch pin is the installed one
    assert ngc.pip_constraints["torch"] == ngc.torch
    # no index serves NVIDIA's build: resolvers take it as installed
    assert ngc.unindexed == {"torch": ngc.torch}
    # where the constraint file is: the factory's images give it to uv
    assert ngc.pip_constraint_files == ("/etc/pip/constraint.txt",)
    # two setuptools on sys.path (Debian's, pip's newer): the one that imports counts
    assert int(ngc.distributions["setuptools"].split(".")[0]) >= 77
    assert f"torch=={ngc.torch}\n" in ngc.constraints()


def test_torchsort_compiles_against_nvidias_torch(session: Session, ngc: Fingerprint,
                                                  torchsort: WheelResult) -> None:
    assert torchsort.state in ("built", "current")
    assert torchsort.wheel and "+pt213cpu" in torchsort.wheel
    files = [f for f in session.devpi.release_files(platform_index(session.factory, NGC),
                                                    "torchsort") if f.filename == torchsort.wheel]
    assert files, f"{torchsort.wheel} is not on {platform_index(session.factory, NGC)}"
    record = first(session.proofs.wheel(files[0]), Kind.WHEEL_TEST)
    assert record is not None and record.passed
    # the wheel's test ran against NVIDIA's torch and left it as it was
    assert record.evidence["torch"].startswith(ngc.torch), record.evidence


def test_cuda_deps_on_the_ngc_platform(session: Session, ngc: Fingerprint,
                                       cuda_deps: ImageResult) -> None:
    assert cuda_deps.state in ("built", "current")
    assert cuda_deps.installed["torch"] == ngc.torch
    lock = (session.factory.images_dir / "cuda-deps" / "locks" / f"{NGC}.txt").read_text()
    assert "torch==" not in lock and "transformers==" in lock
    labels = session.registry.labels(repository(session.factory, "cuda-deps"), cuda_deps.tag)
    proofs = store_labels.read(labels, image="cuda-deps", platform=NGC)
    smoke, audit = first(proofs, Kind.SMOKE), first(proofs, Kind.ABI_AUDIT)
    assert smoke is not None and smoke.passed and smoke.evidence["torch"] == ngc.torch, smoke
    assert audit is not None and audit.passed and audit.evidence["modules"] > 20, audit


def test_pip_and_uv_leave_nvidias_torch_alone(session: Session, ngc: Fingerprint,
                                              cuda_deps: ImageResult, torchsort: WheelResult,
                                              tmp_path: Path) -> None:
    """Seed 001's bug: installing what requires `torch>=2.0` into NGC's image reinstalled
    its pre-release torch. Here: pip (under NGC's PIP_CONSTRAINT) installs torchmetrics
    (torch>=2.0.0), uv installs the factory's torchsort wheel into the system Python, as the
    catalog's snippets say; torch's files are the same before and after. Another torch is
    then refused by NGC's constraint file, and forced past it, seen by the same check."""
    shutil.copy2(TORCH_STATE_SCRIPT, tmp_path / "torch_state.py")
    index = session.devpi.simple_url(platform_index(session.factory, NGC))
    house = wheelhouse()
    script = f"""set -e
python /t/torch_state.py > /tmp/before
pip install -q --index-url {index} torchmetrics
uv pip install --system --index-url {index} torchsort
python /t/torch_state.py > /tmp/after
python -c 'import torch, torchmetrics, torchsort; print("imports", torch.__version__)'
cmp /tmp/before /tmp/after && echo "torch unchanged: $(cat /tmp/after)"
other=/w/$(ls /w | grep '^torch-2.13.0+cpu')
pip install -q --no-deps --force-reinstall "$other" 2>/dev/null || echo "NGC's constraint file refused another torch"
PIP_CONSTRAINT= pip install -q --no-deps --force-reinstall "$other"
python /t/torch_state.py > /tmp/forced
cmp -s /tmp/before /tmp/forced || echo "forced reinstall seen: $(cat /tmp/forced)"
"""
    done = session.docker.run(
        cuda_deps.ref, ["bash", "-c", script], check=False, echo=False,
        volumes=[(tmp_path, "/t", "ro"), (Path(beside_python("uv")), "/usr/local/bin/uv", "ro"),
                 (house, "/w", "ro")] if house else [])
    assert done.returncode == 0, done.tail
    assert f"imports {ngc.torch}" in done.output
    assert f"torch unchanged: torch {ngc.torch}" in done.output, done.output[-2000:]
    assert "NGC's constraint file refused another torch" in done.output, done.output[-2000:]
    assert "forced reinstall seen: torch 2.13.0+cpu" in done.output, done.output[-2000:]


def test_the_platform_index_offers_the_bases_pins_at_the_bases_versions_only(
        session: Session, ngc: Fingerprint) -> None:
    """Read from the real devpi's simple pages, as pip and uv read them: NVIDIA's torch is
    on no index, so the platform's index offers no torch at all (PyPI's mirror has many);
    every other pin of the base's constraint file is offered at the base's version only,
    its file copied from the mirror into factory/<platform>-base."""
    devpi, index = session.devpi, platform_index(session.factory, NGC)
    mirror = session.factory.config.index.mirror
    assert devpi.simple_versions(index, "torch") == set()
    assert len(devpi.simple_versions(mirror, "torch")) > 10
    pinned = {n: v for n, v in ngc.pip_constraints.items()
              if n not in ("torch", "pip", "setuptools", "wheel")}
    assert len(pinned) >= 8, pinned  # the stand-in's torch requirements, at least
    for name, version in pinned.items():
        assert devpi.simple_versions(index, name) == {version}, name
    # sympy: the mirror offers others; the platform's index does not
    assert devpi.simple_versions(mirror, "sympy") - {pinned["sympy"]}
    # what the base does not pin is the mirror's, as before
    assert len(devpi.simple_versions(index, "timm")) > 5


# Popular packages that require torch (and, through torchvision or their own pins, often
# another torch than NVIDIA's). Each is installed with the catalog's pip line (under the
# base's PIP_CONSTRAINT) and its uv line (under the image's UV_CONSTRAINT).
ECOSYSTEM = ("timm", "torchaudio", "kornia", "accelerate")


def test_torch_packages_install_with_the_catalogs_lines_and_never_replace_nvidias_torch(
        session: Session, ngc: Fingerprint, cuda_deps: ImageResult, tmp_path: Path) -> None:
    """Seed 001 through the factory's own index: `uv pip install --system timm` once
    replaced NGC's torch with PyPI's 2.15.0 (timm -> torchvision 0.29.2 -> torch==2.15.0).
    Now each package either installs with torch's files unchanged, or is refused by the
    resolver with a message that names torch's pin; torch's files are compared after every
    attempt, installed or not."""
    snapshot = Snapshot(taken_at="", registry="", index=session.devpi.base_url,
                        platforms={NGC: ngc.model_dump(mode="json")}, images={}, wheels=[],
                        errors=[], index_user=session.factory.config.index.user)
    [row] = views.platforms(snapshot)
    lines = {"pip": row["pip"], "uv": row["uv_pip"]}
    assert lines["uv"].startswith("uv pip install --system --index-url ")
    shutil.copy2(TORCH_STATE_SCRIPT, tmp_path / "torch_state.py")
    attempts = "".join(
        f"try {tool} {pkg} {line.replace('PACKAGE', pkg)}\n"
        for pkg in ECOSYSTEM for tool, line in lines.items())
    script = f"""set -u
echo "UV_CONSTRAINT=$UV_CONSTRAINT PIP_CONSTRAINT=$PIP_CONSTRAINT"
python /t/torch_state.py > /tmp/before
try() {{
    tool=$1 pkg=$2; shift 2
    "$@" > /tmp/out 2>&1; rc=$?
    python /t/torch_state.py > /tmp/now
    cmp -s /tmp/before /tmp/now && same=same || same=CHANGED
    echo "RESULT $tool $pkg rc=$rc torch=$same"
    [ $rc = 0 ] || tail -c 1500 /tmp/out | sed "s/^/  $tool $pkg: /"
    # the other tool resolves it afresh
    [ $rc != 0 ] || pip uninstall -q -y $pkg > /dev/null 2>&1
}}
{attempts}python -c 'import torch; print("torch at the end", torch.__version__)'
"""
    done = session.docker.run(
        cuda_deps.ref, ["bash", "-c", script], check=False, echo=False,
        volumes=[(tmp_path, "/t", "ro"), (Path(beside_python("uv")), "/usr/local/bin/uv", "ro")])
    (tmp_path / "attempts.log").write_text(done.output)
    assert done.returncode == 0, done.tail
    assert "UV_CONSTRAINT=/etc/pip/constraint.txt" in done.output, done.output[:500]
    results = re.findall(r"^RESULT (\S+) (\S+) rc=(\d+) torch=(\S+)$", done.output, re.M)
    assert len(results) == 2 * len(ECOSYSTEM), done.output[-3000:]
    for tool, pkg, rc, torch_files in results:
        assert torch_files == "same", f"{tool} {pkg} changed torch's files:\n{done.output}"
        if rc != "0":
            said = "\n".join(line for line in done.output.splitlines()
                              if line.startswith(f"  {tool} {pkg}: "))
            # refused by the resolver, naming torch and the base's pin of it
            assert "torch" in said and ngc.torch in said, said
    assert f"torch at the end {ngc.torch}" in done.output
    # the point of an index is that things install: what needs no other torch does
    installed = {(tool, pkg) for tool, pkg, rc, _ in results if rc == "0"}
    assert ("pip", "accelerate") in installed and ("uv", "accelerate") in installed, results
