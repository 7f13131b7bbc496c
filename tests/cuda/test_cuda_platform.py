"""The CUDA half for real, without a GPU: a base with torch's CUDA 13 build and nvcc,
a CUDA kernel compiled for named architectures, repaired without vendoring CUDA, tested,
uploaded, and cuda-deps built on it."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import zipfile

from packaging.version import Version

from basefactory.catalog import views
from basefactory.catalog.server import make_catalog
from basefactory.images.publish import build_all as build_images
from basefactory.platforms.publish import PlatformResult
from basefactory.proofs import store_devpi
from basefactory.refs import platform_index
from basefactory.session import Session
from basefactory.wheels.publish import build_all as build_wheels
from tests.cuda.conftest import CUDA, TOOLKIT

VENDOR_NEVER = ("libtorch*", "libc10*", "libcudart*", "libcublas*", "libnvrtc*", "libcudnn*",
                "libnccl*")


def test_probe_reports_cuda_13_and_torch_2_14(platform: PlatformResult) -> None:
    fp = platform.fingerprint
    # torch reports its local label (2.14.1+cu130): the public part is the release
    assert Version(fp.torch).public == "2.14.1" and fp.cuda == "13.0"
    assert fp.local_label == "pt214cu130" and fp.python_tag == "cp311"
    assert "nvidia-cublas" in fp.distributions and "cuda-toolkit" in fp.distributions


def test_cuda_extension_compiled_for_the_arch_list(session: Session, platform: PlatformResult) -> None:
    [result] = build_wheels(session, ["torchsort"], [CUDA])
    assert result.state in ("built", "current")
    wheel = session.factory.wheels_dir / CUDA / (result.wheel or "")
    assert "+pt214cu130-" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        cuda_so = [n for n in names if "isotonic_cuda" in n and n.endswith(".so")]
        assert cuda_so, names
        vendored = [n for n in names if ".libs/" in n]
        assert not [v for v in vendored
                    if any(fnmatch.fnmatch(v.rsplit("/", 1)[1], p) for p in VENDOR_NEVER)]
    files = session.devpi.release_files(platform_index(session.factory, CUDA), "torchsort")
    mine = [f for f in files if f.filename == wheel.name]
    assert mine and mine[0].toxresults  # tested in the base (imports without a GPU) and uploaded
    record = store_devpi.read(session.devpi, mine[0].toxresults[0])
    assert record.passed and record.evidence["device_code"] == {cuda_so[0]: ["sm_80", "sm_90"]}
    # the same read by NVIDIA's cuobjdump, where this host has one (triton ships it)
    cuobjdump = shutil.which("cuobjdump") or (str(TOOLKIT / "bin" / "cuobjdump")
                                              if (TOOLKIT / "bin" / "cuobjdump").exists() else None)
    if cuobjdump:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(cuda_so[0], session.factory.state_dir / "inspect")
        elf = subprocess.run([cuobjdump, "--list-elf",
                              str(session.factory.state_dir / "inspect" / cuda_so[0])],
                             capture_output=True, text=True, check=True).stdout
        assert "sm_80" in elf and "sm_90" in elf, elf


def test_cuda_deps_on_the_cuda_platform_reaches_the_catalog(session: Session,
                                                            platform: PlatformResult) -> None:
    [result] = build_images(session, ["cuda-deps"], [CUDA])
    assert result.state in ("built", "current")
    catalog = make_catalog(session.factory)
    try:
        assert catalog.refresh()
        assert catalog.snapshot is not None
        cells = views.image(catalog.snapshot, "cuda-deps")["platforms"]
        assert CUDA in cells
        proofs = cells[CUDA]["proofs"]
        assert proofs["smoke"]["passed"] is True
        assert Version(proofs["smoke"]["evidence"]["torch"]).public == "2.14.1"
        # every module loads, torch's CUDA build included, with cuda-deps's declared
        # allowances (NVSHMEM's and cuFile's cluster plugins) and libcuda from the host
        audit = proofs["abi-audit"]
        assert audit["passed"] is True and audit["evidence"]["modules"] > 100
        assert {h["library"] for h in audit["evidence"]["host_provided"]} == {"libcuda.so.1"}
    finally:
        catalog.reader.close()
