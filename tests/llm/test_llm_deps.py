"""vLLM for real, without a GPU: PyPI's vLLM 0.33.0 wheel adopted onto the CUDA platform's
torch 2.14.1 with its declared overrides, tested and ABI-audited (every vLLM kernel loaded
against torch 2.14.1), uploaded; llm-deps built on it, smoke-tested (CLI, server imports),
audited and pushed; the catalog shows the overrides. Serving a model needs a GPU: not run."""

from __future__ import annotations

from packaging.version import Version

from basefactory.catalog import views
from basefactory.catalog.server import make_catalog
from basefactory.images.publish import build_all as build_images
from basefactory.platforms.publish import PlatformResult
from basefactory.proofs import store_devpi
from basefactory.refs import platform_index
from basefactory.session import Session
from basefactory.wheels.publish import build_all as build_wheels
from tests.cuda.conftest import CUDA


def test_vllm_adopted_with_its_overrides_recorded(session: Session, platform: PlatformResult) -> None:
    [result] = build_wheels(session, ["vllm"], [CUDA])
    assert result.state in ("built", "current")
    assert result.wheel and result.wheel.startswith("vllm-0.33.0+pt214cu130-")
    files = session.devpi.release_files(platform_index(session.factory, CUDA), "vllm")
    [mine] = [f for f in files if f.filename == result.wheel]
    record = store_devpi.read(session.devpi, mine.toxresults[0])
    assert record.passed
    overrides = {o["requirement"]: o["replace"] for o in record.evidence["adopted"]["overrides"]}
    assert overrides["torch==2.14.0"] == "torch==2.14.1" and overrides["torchaudio==2.11.0"] is None
    audit = record.evidence["abi_audit"]
    # every vLLM extension module loaded against torch 2.14.1 (libcuda is the host's)
    assert audit["modules"] >= 10 and not audit["failures"], audit
    assert record.evidence["torch"].startswith("2.14.1")


def test_llm_deps_builds_passes_its_smoke_and_audit_and_reaches_the_catalog(
        session: Session, platform: PlatformResult) -> None:
    [result] = build_images(session, ["llm-deps"], [CUDA])
    assert result.state in ("built", "current")
    catalog = make_catalog(session.factory)
    try:
        assert catalog.refresh() and catalog.snapshot is not None
        cell = views.image(catalog.snapshot, "llm-deps")["platforms"][CUDA]
        smoke = cell["proofs"]["smoke"]
        assert smoke["passed"] and Version(smoke["evidence"]["torch"]).public == "2.14.1"
        assert any("vllm 0.33.0" in line for line in smoke["evidence"]["output"]), smoke
        audit = cell["proofs"]["abi-audit"]
        assert audit["passed"] and audit["evidence"]["modules"] > 150
        wheels = views.platform(catalog.snapshot, CUDA)["wheels"]
        vllm = next(w for w in wheels if w["project"] == "vllm")
        assert {o["requirement"] for o in vllm["overrides"]} >= {"torch==2.14.0", "torchaudio==2.11.0"}
    finally:
        catalog.reader.close()
