"""Seed 001's Index-TTS service: FROM indextts-deps plus this file.

GET  /health      {"status", "model_loaded", "device", "cuda_available"} (seed 001's fields)
POST /synthesize  {"text", "max_mel_tokens"?} with the reference voice as `prompt` (a WAV
                  file in a multipart form, or the default voice) -> audio/wav

The model is loaded once at start-up from INDEXTTS_CHECKPOINTS (default ./checkpoints,
where IndexTTS2 also looks for its Hugging Face cache); on a GPU host with the factory's
prebuilt BigVGAN kernel. A failed load leaves /health answering `model_loaded: false`
with the reason, so an orchestrator's probe sees it instead of a crash loop.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from fastapi import FastAPI, Form, HTTPException, UploadFile
from fastapi.responses import Response

CHECKPOINTS = Path(os.environ.get("INDEXTTS_CHECKPOINTS", "checkpoints")).resolve()
DEVICE = os.environ.get("INDEXTTS_DEVICE") or ("cuda:0" if torch.cuda.is_available() else "cpu")

app = FastAPI(title="indextts-service")
state: dict[str, object] = {"model": None, "error": None}
lock = threading.Lock()  # IndexTTS2 keeps per-call caches: one synthesis at a time


@app.on_event("startup")
def load() -> None:
    try:
        os.chdir(CHECKPOINTS.parent)  # ./checkpoints/hf_cache, as infer_v2 sets it
        from indextts.infer_v2 import IndexTTS2

        state["model"] = IndexTTS2(cfg_path=str(CHECKPOINTS / "config.yaml"),
                                   model_dir=str(CHECKPOINTS), device=DEVICE,
                                   use_fp16=DEVICE.startswith("cuda"),
                                   use_cuda_kernel=DEVICE.startswith("cuda"))
    except Exception as exc:  # reported by /health; the server stays up
        state["error"] = f"{type(exc).__name__}: {exc}"


@app.get("/health")
def health() -> dict[str, object]:
    loaded = state["model"] is not None
    # the fields and values seed 001's probe expects: "healthy", "cuda" or "cpu"
    body: dict[str, object] = {"status": "healthy" if loaded else "unhealthy",
                               "model_loaded": loaded, "device": DEVICE.split(":")[0],
                               "cuda_available": torch.cuda.is_available()}
    if state["error"]:
        body["error"] = state["error"]
    return body


def default_voice(path: Path) -> None:
    rate = 22050
    t = np.arange(2 * rate) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype("float32"), rate)


@app.post("/synthesize")
def synthesize(text: str = Form(...), max_mel_tokens: int = Form(1500),
               prompt: UploadFile | None = None) -> Response:
    model = state["model"]
    if model is None:
        raise HTTPException(503, f"the model is not loaded: {state['error']}")
    if not text.strip():
        raise HTTPException(422, "text is empty")
    with tempfile.TemporaryDirectory() as tmp:
        voice, out = Path(tmp) / "prompt.wav", Path(tmp) / "out.wav"
        if prompt is not None:
            voice.write_bytes(prompt.file.read())
        else:
            default_voice(voice)
        with lock:
            model.infer(spk_audio_prompt=str(voice), text=text, output_path=str(out),  # type: ignore[attr-defined]
                        max_mel_tokens=max_mel_tokens, verbose=False)
        return Response(out.read_bytes(), media_type="audio/wav")
