"""The ABI audit on real images: every published image passes it (its proof is in the
image's labels), and an image that installs a module built for another torch is refused
before anything is pushed, naming the distribution, the module and the symbol."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs import Kind, store_labels
from basefactory.proofs.read import first
from basefactory.refs import repository
from basefactory.session import Session
from tests.helpers import PLATFORM, ROOT

BF = [str(ROOT / ".venv" / "bin" / "basefactory")]


def test_every_published_image_carries_a_passed_abi_audit(
        session: Session, published: dict[str, ImageResult]) -> None:
    for name, result in published.items():
        labels = session.registry.labels(repository(session.factory, name), result.tag)
        audit = first(store_labels.read(labels, image=name, platform=PLATFORM), Kind.ABI_AUDIT)
        assert audit is not None and audit.passed, (name, audit)
        assert audit.subject.image_digest == result.input_digest
        assert audit.evidence["modules"] > 0 and audit.evidence["failures"] == []
        if name != "api-lean":  # torch's own modules were loaded too
            assert audit.evidence["modules"] > 20, audit.evidence


def test_images_audit_command_checks_a_published_image(
        session: Session, published: dict[str, ImageResult]) -> None:
    out = subprocess.run([*BF, "--config", str(session.factory.path), "images", "audit",
                          "cuda-deps", "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["image"].endswith(f"/factory/cuda-deps:{PLATFORM}") and row["passed"] is True
    assert row["modules"] > 20 and row["failures"] == []
    # an image's declared allowances hold for the command as they did before its push:
    # tts-deps allows numba's TBB layer, whose libtbb it does not ship
    out = subprocess.run([*BF, "--config", str(session.factory.path), "images", "audit",
                          "tts-deps", "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["passed"] is True and row["failures"] == []
    assert [a["module"].split(".")[0] for a in row["allowed"]] == ["numba/np/ufunc/tbbpool"]


def test_a_module_built_for_another_torch_is_refused_and_named(
        session: Session, published: dict[str, ImageResult]) -> None:
    """The regression a user met: PyPI's torchaudio 2.11.0 (no Requires-Dist, so the lock
    lets it in) installs beside torch 2.13, and `import torchaudio` fails at run time."""
    folder = session.factory.images_dir / "bad-abi"
    folder.mkdir()
    (folder / "image.toml").write_text(textwrap.dedent("""
        parent = "cuda-deps"
        size_budget_mb = 5000
    """))
    (folder / "requirements.in").write_text("torchaudio==2.11.0\n")
    local = f"basefactory/image-build:bad-abi-{PLATFORM}"
    try:
        with pytest.raises(TestFailed) as caught:
            build_all(session, ["bad-abi"])
        message = str(caught.value)
        assert "ABI audit" in message and "nothing was pushed" in message, message
        # PyPI's torchaudio 2.11.0 for x86_64 is its CUDA 13 build: on this CPU torch its
        # modules lack the CUDA runtime (and, with it, torch's libc10_cuda), which is what
        # made `import torchaudio` fail for the user
        assert ("torchaudio: torchaudio/lib/_torchaudio.abi3.so: missing library"
                " libcudart.so.13") in message, message
        assert "build it here against this torch with a recipe" in caught.value.hint
        assert session.registry.tags(repository(session.factory, "bad-abi")) == []
        # the command says the same of the image left behind by the refused build
        out = subprocess.run([*BF, "--config", str(session.factory.path), "images", "audit",
                              local], capture_output=True, text=True, timeout=600)
        assert out.returncode == TestFailed.exit_code, out.stdout + out.stderr
        assert "_torchaudio.abi3.so: missing library libcudart.so.13" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        shutil.rmtree(folder)
        session.docker.remove_image(local)


def test_a_local_image_from_tts_deps_is_audited_with_inherited_allowances(
        session: Session, published: dict[str, ImageResult], tmp_path: Path) -> None:
    """What a user does: build `FROM tts-deps` here (a short name, never pushed), add a
    torch extension built for another torch, and audit it. The command finds the image in
    the local engine, exits 6 naming the module and its symbol, and does not report what
    tts-deps allows (its allowances hold, shown as inherited)."""
    symbol = "_ZN3c1019UndefinedTensorImpl10_singletonE_of_another_torch"
    (tmp_path / "ext.c").write_text(f"extern int {symbol}(void); int f(void) {{ return {symbol}(); }}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "_C.so"), str(tmp_path / "ext.c")],
                   check=True)
    site = "/opt/venv/lib/python3.11/site-packages"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {published['tts-deps'].ref}\nCOPY _C.so {site}/myext/_C.so\n")
    local = "myservice-audit-test:latest"
    session.docker.build(tmp_path, dockerfile=tmp_path / "Dockerfile", tags=[local])
    try:
        out = subprocess.run([*BF, "--config", str(session.factory.path), "images", "audit",
                              local, "--json"], capture_output=True, text=True, timeout=600)
        assert out.returncode == TestFailed.exit_code, out.stdout[-2000:] + out.stderr[-2000:]
        (row,) = json.loads(out.stdout)
        assert row["image"] == local and row["passed"] is False
        assert [(f["module"], f.get("symbol")) for f in row["failures"]] == [("myext/_C.so", symbol)]
        inherited = [a for a in row["allowed"] if a["module"].startswith("numba/np/ufunc/tbbpool")]
        assert inherited and inherited[0]["allowed_because"].startswith("inherited from tts-deps:")
        text = subprocess.run([*BF, "--config", str(session.factory.path), "images", "audit",
                               local], capture_output=True, text=True, timeout=600)
        assert text.returncode == TestFailed.exit_code
        assert f"myext/_C.so: undefined symbol {symbol}" in text.stderr, text.stderr[-2000:]
        assert "tbbpool" not in text.stderr and "Traceback" not in text.stderr
    finally:
        session.docker.remove_image(local)
