"""What a probe of a platform's base found, and what follows from it."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import BaseModel, ConfigDict

# Install tools, not runtime: builds may need newer ones than the base ships, and nothing
# loads them against torch.
BUILD_FRONTENDS = frozenset({"pip", "setuptools", "wheel"})


class Fingerprint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: str
    base_image: str
    base_digest: str  # the image id of the base the probe ran in
    python: str
    python_tag: str
    torch: str
    cuda: str | None
    cxx11_abi: bool
    glibc: str
    arch: str
    distributions: dict[str, str]  # canonical name -> version: the base's constraints
    probed_at: str
    slim_image: str | None = None  # the platform's Python without torch, if it has one
    slim_distributions: dict[str, str] = {}
    # a pulled base: REPO@sha256:... of what was pulled (NGC's tags move; this does not)
    base_source: str | None = None
    # where the base's Python keeps its packages: a venv the factory made (bootstrapped), or
    # a system Python's dist-packages (NVIDIA's PyTorch images)
    python_executable: str = ""
    site_packages: str = ""
    in_venv: bool = True
    # the pins of the base's own pip constraint file(s) ($PIP_CONSTRAINT: NGC from 25.03)
    pip_constraints: dict[str, str] = {}
    # those files' paths in the base: the factory's images give them to uv (UV_CONSTRAINT),
    # which does not read PIP_CONSTRAINT
    pip_constraint_files: tuple[str, ...] = ()
    # what the probe that made this knew to look for: an older one is probed again
    probe_version: int = 1
    # the base's distributions that its index does not serve at the installed version
    # (NVIDIA's pre-release builds, 2.13.0a0+<commit>.nv25.10): resolvers must take them as
    # installed, never fetch them; set by ensure_platform from the index
    unindexed: dict[str, str] = {}

    @property
    def torch_installed(self) -> str:
        """torch's version as pip sees it (its metadata), which images are checked against:
        torch.__version__ may carry a local label its metadata lacks (PyPI's CUDA build
        says 2.14.1+cu130, its metadata 2.14.1)."""
        return self.distributions.get("torch", self.torch)

    @property
    def local_label(self) -> str:
        """The PEP 440 local label of wheels built here: pt213cpu, pt214cu130."""
        return local_label(self.torch, self.cuda)

    def index_pins(self) -> dict[str, str]:
        """What the platform's index offers at the base's version only (index/base_pins.py):
        the pins of the base's constraint file, and torch. Build frontends are left out:
        isolated build environments fetch newer ones, and nothing loads them against torch."""
        pins: dict[str, str] = {canonicalize_name(n): v for n, v in self.pip_constraints.items()}
        pins["torch"] = self.torch_installed
        return {n: v for n, v in sorted(pins.items()) if n not in BUILD_FRONTENDS}

    def constraints(self) -> str:
        """pip/uv constraints: nothing the base ships is ever reinstalled or upgraded, and
        what the base's own constraint file pins (and it does not ship) keeps that pin."""
        pins = {**self.pip_constraints, **self.distributions}
        return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


# 2: pip_constraint_files
PROBE_VERSION = 2


def local_label(torch: str, cuda: str | None) -> str:
    release = Version(torch).release
    accel = "cu" + "".join(cuda.split(".")[:2]) if cuda else "cpu"
    return f"pt{release[0]}{release[1]}{accel}"


# Lists the distributions of a torch-free image (the slim tier).
DISTRIBUTIONS_SCRIPT = r"""
import importlib.metadata as md, json, re
found = {}
for d in md.distributions():
    if d.metadata["Name"]:
        found.setdefault(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(), d.version)
print(json.dumps(found))
"""


# Runs inside the base with its own python; prints one JSON document. Only the standard
# library and torch: a base need not have anything else.
PROBE_SCRIPT = r"""
import importlib.metadata as md, json, os, platform, re, sys
import torch
def canon(n): return re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for path in os.environ.get("PIP_CONSTRAINT", "").split():
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*===?\s*([^\s;#]+)", line)
        if m:
            pins.setdefault(canon(m.group(1)), m.group(2))
dists = {}
for d in md.distributions():
    name = d.metadata["Name"]
    # the first on sys.path is the one that imports: a system Python may hold two copies
    # (Debian's setuptools in /usr/lib/python3, pip's newer one in /usr/local)
    if name and canon(name) not in dists:
        dists[canon(name)] = d.version
print(json.dumps({
    "python": platform.python_version(),
    "python_tag": "cp%d%d" % sys.version_info[:2],
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    "glibc": platform.libc_ver()[1],
    "arch": platform.machine(),
    "distributions": dists,
    "python_executable": sys.executable,
    "site_packages": os.path.dirname(os.path.dirname(torch.__file__)),
    "in_venv": sys.prefix != sys.base_prefix,
    "pip_constraints": pins,
    "pip_constraint_files": os.environ.get("PIP_CONSTRAINT", "").split(),
}))
"""
