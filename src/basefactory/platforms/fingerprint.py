"""What a probe of a platform's base found, and what follows from it."""

from __future__ import annotations

from packaging.version import Version
from pydantic import BaseModel, ConfigDict


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

    def constraints(self) -> str:
        """pip/uv constraints: nothing the base ships is ever reinstalled or upgraded."""
        return "".join(f"{name}=={version}\n" for name, version in sorted(
            self.distributions.items()))


def local_label(torch: str, cuda: str | None) -> str:
    release = Version(torch).release
    accel = "cu" + "".join(cuda.split(".")[:2]) if cuda else "cpu"
    return f"pt{release[0]}{release[1]}{accel}"


# Lists the distributions of a torch-free image (the slim tier).
DISTRIBUTIONS_SCRIPT = r"""
import importlib.metadata as md, json, re
print(json.dumps({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
                  for d in md.distributions() if d.metadata["Name"]}))
"""


# Runs inside the base with its own python; prints one JSON document. Only the standard
# library and torch: a base need not have anything else.
PROBE_SCRIPT = r"""
import importlib.metadata as md, json, platform, re, sys
import torch
def canon(n): return re.sub(r"[-_.]+", "-", n).lower()
dists = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name:
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
}))
"""
