"""Build the NGC stand-in (Dockerfile beside this file) and push it to the factory's
registry under a mirror path, as a site mirrors nvcr.io:

    REGISTRY/mirror/nvcr.io/nvidia/pytorch:25.10-py3-cpu-standin   (torch 2.13 CPU build)
    REGISTRY/mirror/nvcr.io/nvidia/pytorch:25.10-py3-standin       (--cuda: torch 2.14.1, CUDA 13)

    python standins/ngc-pytorch/build.py [--cuda] [--factory factory.toml]

The last line printed is the pushed reference. Needs the factory's services (`basefactory
up`): the index serves torch's requirements, the registry takes the image.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from basefactory.adapters.docker import Docker, detect_client
from basefactory.config.factory import load_factory
from basefactory.platforms.rootfs import ensure_rootfs, host_apt_mirror
from basefactory.plumbing.errors import BasefactoryError

HERE = Path(__file__).resolve().parent
RELEASE = "25.10"  # the NGC release whose layout this copies (PIP_CONSTRAINT since 25.03)
REPOSITORY = "mirror/nvcr.io/nvidia/pytorch"


def ngc_version(wheel: Path, *, nv: bool = True) -> str:
    """NVIDIA's label for a build from the same commit: torch 2.13.0a0+cf30153c4c.nv25.10
    (the next minor's .0a0 for a patch release, as NVIDIA builds from the main branch);
    torchvision without the .nv part (0.29.0a0+<commit>)."""
    package = wheel.name.split("-", 1)[0]
    with zipfile.ZipFile(wheel) as whl:
        text = whl.read(f"{package}/version.py").decode()
    commit = re.search(r"^git_version = '([0-9a-f]+)'", text, re.M)
    major, minor = re.match(rf"{package}-(\d+)\.(\d+)", wheel.name).groups()  # type: ignore[union-attr]
    label = f"{major}.{minor}.0a0+{commit.group(1)[:10] if commit else 'unknown'}"
    return f"{label}.nv{RELEASE}" if nv else label


def torchvision_for(house: Path, torch: Path) -> Path | None:
    """The newest torchvision of the wheelhouse whose requirement on torch this torch meets.
    PyPI's are CUDA builds, so a local build of torch (2.13.0+cpu) has none."""
    version = Version(parse_wheel_filename(torch.name)[1].public)
    if parse_wheel_filename(torch.name)[1].local:
        return None
    found = []
    for wheel in house.glob("torchvision-*.whl"):
        with zipfile.ZipFile(wheel) as whl:
            meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            text = whl.read(meta).decode()
        for line in re.findall(r"^Requires-Dist: (torch\b.*)$", text, re.M):
            if Requirement(line).name == "torch" and Requirement(line).specifier.contains(version):
                found.append((parse_wheel_filename(wheel.name)[1], wheel))
    return max(found)[1] if found else None


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", action="store_true",
                        help="the CUDA variant: torch 2.14.1 (CUDA 13) and the CUDA toolkit")
    parser.add_argument("--factory", default="factory.toml", type=Path)
    parser.add_argument("--wheelhouse", type=Path,
                        help="a folder with the torch wheel (and, for --cuda, its nvidia-* wheels)")
    parser.add_argument("--cuda-toolkit", type=Path, default=Path("/usr/local/cuda-13.0"))
    args = parser.parse_args()
    factory = load_factory(args.factory)
    docker = Docker(detect_client(factory.config.engine.docker))
    house = args.wheelhouse or Path("/opt/pypi-more/files" if args.cuda else "/opt/wheels")
    pattern = "torch-2.14.1-*.whl" if args.cuda else "torch-2.13.0+cpu-*.whl"
    torch = next(iter(sorted(house.glob(pattern))), None)
    if torch is None:
        print(f"standin: no {pattern} in {house} (--wheelhouse DIR)", file=sys.stderr)
        return 2
    version = ngc_version(torch)
    torchvision = torchvision_for(house, torch)
    variant = "" if args.cuda else "-cpu"
    ref = f"{factory.config.registry.address}/{REPOSITORY}:{RELEASE}-py3{variant}-standin"
    rootfs = ensure_rootfs(docker, "bookworm", host_apt_mirror())
    # the wheels are hard-linked into the context where the file system allows it
    with tempfile.TemporaryDirectory(prefix="ngc-standin-") as tmp:
        context = Path(tmp)
        for name in ("Dockerfile", "retag.py"):
            shutil.copy2(HERE / name, context / name)
        (context / "wheels").mkdir()
        (context / "cuda").mkdir()
        wheels = [torch] + ([torchvision] if torchvision else [])
        if args.cuda:
            # torch's NVIDIA libraries as the wheelhouse has them (NGC keeps them in system
            # folders: a difference the README names)
            wheels += sorted(house.glob("nvidia_*.whl")) + sorted(house.glob("triton-*.whl"))
            for part in ("bin", "include", "lib64", "nvvm", "targets", "version.json"):
                src = args.cuda_toolkit / part
                if src.is_dir():
                    shutil.copytree(src, context / "cuda" / part, symlinks=True)
                elif src.exists():
                    shutil.copy2(src, context / "cuda" / part)
        for wheel in wheels:
            link_or_copy(wheel, context / "wheels" / wheel.name)
        docker.build(context, dockerfile=context / "Dockerfile", tags=[ref],
                     build_args={"ROOTFS": rootfs, "TORCH_VERSION": version,
                                 "TORCHVISION_VERSION": (ngc_version(torchvision, nv=False)
                                                         if torchvision else ""),
                                 "NGC_RELEASE": RELEASE,
                                 "VARIANT": "cuda" if args.cuda else "cpu",
                                 "INDEX_URL": f"{factory.config.index.base_url}/root/pypi/+simple/"},
                     log_file=factory.logs_dir / f"standin-ngc{variant}.log")
    docker.push(ref)
    print(ref)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BasefactoryError as exc:
        print(f"standin: {exc}", file=sys.stderr)
        sys.exit(1)
