"""Index-TTS for real on the TTS platform (make test-tts): PyPI's wheel of the official
source adopted with its two patches recorded; BigVGAN's CUDA kernel compiled ahead of time
from that wheel's own sources (sm_80 + sm_90, read from the .so); indextts-deps built,
ABI-audited and smoke-tested by running IndexTTS2's inference path on random weights; and
seed 001's service FROM that image answering /health with the model loaded and
synthesizing a WAV. A GPU is not needed and not used: the kernel's run is not tested here."""

from __future__ import annotations

import array
import socket
import struct
import subprocess
from pathlib import Path

import httpx

from basefactory.images.publish import build_all as build_images
from basefactory.platforms.publish import PlatformResult
from basefactory.proofs import store_devpi
from basefactory.refs import common_index, image_ref, platform_index
from basefactory.session import Session
from basefactory.wheels.publish import build_all as build_wheels
from tests.helpers import ROOT, wait_http
from tests.service_inputs import check_indextts_refuses_bad_input
from tests.tts.conftest import TTS


def _record(session: Session, index: str, project: str, filename: str) -> dict:
    [mine] = [f for f in session.devpi.release_files(index, project) if f.filename == filename]
    record = store_devpi.read(session.devpi, mine.toxresults[0])
    assert record.passed
    return record.evidence


def test_kernel_and_index_tts_wheels(session: Session, platform: PlatformResult) -> None:
    results = {r.recipe: r for r in build_wheels(session, ["indextts-bigvgan-kernel", "index-tts"], [TTS])}
    kernel, itts = results["indextts-bigvgan-kernel"], results["index-tts"]
    assert kernel.wheel and kernel.wheel.startswith("indextts_bigvgan_kernel-2.0.1+pt211cu130-")
    evidence = _record(session, platform_index(session.factory, TTS), "indextts-bigvgan-kernel",
                       kernel.wheel)
    [code] = [c for lib, c in evidence["device_code"].items() if "/_C" in lib]
    assert {"sm_80", "sm_90"} <= set(code), evidence["device_code"]
    assert not evidence["abi_audit"]["failures"]
    assert itts.wheel and itts.wheel.startswith("tts_webui_index_tts-2.0.1-")
    evidence = _record(session, common_index(session.factory), "tts-webui-index-tts", itts.wheel)
    patches = {p["file"]: p for p in evidence["adopted"]["patches"]}
    assert set(patches) == {"patches/index-tts/prebuilt-bigvgan-kernel.patch",
                            "patches/index-tts/code-lens-once.patch"}
    assert all(len(p["sha256"]) == 64 and p["reason"] for p in patches.values())


def _wav(data: bytes) -> tuple[int, int, float]:
    """(sample rate, frames, peak) of a PCM-16 or float-32 WAV."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:12]
    at, fmt, rate, bits, samples = 12, 0, 0, 0, b""
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if chunk == b"fmt ":
            fmt, _, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, at + 8)
        elif chunk == b"data":
            samples = data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)
    values = array.array("f" if bits == 32 else "h", samples)
    scale = 1.0 if bits == 32 else 32768.0
    return rate, len(values), max((abs(v) / scale for v in values), default=0.0)


def test_indextts_deps_synthesizes_and_the_seed_service_runs_on_it(
        session: Session, platform: PlatformResult, tmp_path: Path) -> None:
    [result] = build_images(session, ["indextts-deps"], [TTS])
    assert result.state in ("built", "current")
    labels = session.registry.labels(f"{session.factory.config.registry.namespace}/indextts-deps",
                                     result.tag)
    assert labels, "no labels on the pushed image"

    docker = session.docker.client.path
    ref = image_ref(session.factory, "indextts-deps", TTS)
    # the smoke test's proof: the prebuilt kernel and a non-silent WAV from infer()
    smoke = subprocess.run([docker, "run", "--rm", ref, "python", "/opt/indextts/smoke.py"],
                           capture_output=True, text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
    assert "BigVGAN kernel prebuilt: _C" in smoke.stdout and "sm_80, sm_90" in smoke.stdout
    assert "s of audio at 22050 Hz" in smoke.stdout

    context = ROOT / "examples" / "indextts-service"
    tag = "basefactory-test/indextts-service:latest"
    session.docker.build(context, dockerfile=context / "Dockerfile", tags=[tag],
                         build_args={"BASE": ref}, log_file=tmp_path / "build.log")
    checkpoints = tmp_path / "checkpoints"
    subprocess.run([docker, "run", "--rm", "-v", f"{tmp_path}:/out", ref, "python",
                    "/opt/indextts/make_checkpoint.py", "/out/checkpoints"], check=True,
                   capture_output=True, timeout=600)
    assert (checkpoints / "config.yaml").exists() and (checkpoints / "hf_cache").is_dir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    name = f"indextts-service-{port}"
    subprocess.run([docker, "run", "-d", "--rm", "--name", name, "--network", "host",
                    "-v", f"{checkpoints}:/app/checkpoints:ro", tag, "python", "-m", "uvicorn",
                    "app:app", "--host", "127.0.0.1", "--port", str(port)],
                   check=True, capture_output=True)
    try:
        health = wait_http(f"http://127.0.0.1:{port}/health", timeout=300).json()
        assert health == {"status": "healthy", "model_loaded": True, "device": "cpu",
                          "cuda_available": False}, health
        # each bad request a 422 naming its field (a prompt that is not audio and a
        # negative budget were 500s); the good request after them still synthesizes
        check_indextts_refuses_bad_input(f"http://127.0.0.1:{port}")
        answer = httpx.post(f"http://127.0.0.1:{port}/synthesize", timeout=300,
                            data={"text": "Hello from the factory.", "max_mel_tokens": "60"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "audio/wav"
        rate, frames, peak = _wav(answer.content)
        assert rate == 22050 and frames > rate // 10 and peak > 1e-4, (rate, frames, peak)
    finally:
        logs = subprocess.run([docker, "logs", name], capture_output=True, text=True)
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
        (tmp_path / "service.log").write_text(logs.stdout + logs.stderr)
