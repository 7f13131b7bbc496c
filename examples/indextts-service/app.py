"""Seed 001's Index-TTS service: FROM indextts-deps plus this file.

GET  /health      {"status", "model_loaded", "device", "cuda_available"} (seed 001's fields)
POST /synthesize  {"text", "max_mel_tokens"?} with the reference voice as `prompt` (a WAV
                  file in a multipart form, or the default voice) -> audio/wav

Bad input is answered 422 before the model is touched, in FastAPI's own shape
(`detail: [{"loc": ["body", FIELD], "msg": ...}]`): empty or oversized text, a token budget
outside 1..INDEXTTS_MAX_MEL_TOKENS, a prompt that is not readable audio or too long. The
limits come from the environment (INDEXTTS_MAX_TEXT_CHARS, INDEXTTS_MAX_MEL_TOKENS,
INDEXTTS_MAX_PROMPT_S).

The model is loaded once at start-up from INDEXTTS_CHECKPOINTS (default ./checkpoints,
where IndexTTS2 also looks for its Hugging Face cache); on a GPU host with the factory's
prebuilt BigVGAN kernel. A failed load leaves /health answering `model_loaded: false`
with the reason, so an orchestrator's probe sees it instead of a crash loop.
"""

from __future__ import annotations

import io
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
MAX_TEXT_CHARS = int(os.environ.get("INDEXTTS_MAX_TEXT_CHARS", "600"))
# IndexTTS2's GPT stops at 1815 mel tokens (its config's gpt.max_mel_tokens)
MAX_MEL_TOKENS = int(os.environ.get("INDEXTTS_MAX_MEL_TOKENS", "1815"))
MAX_PROMPT_S = float(os.environ.get("INDEXTTS_MAX_PROMPT_S", "60"))

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


def bad(field: str, message: str) -> HTTPException:
    """A 422 in the shape FastAPI gives its own validation errors."""
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def check(text: str, max_mel_tokens: int, prompt: bytes | None) -> None:
    if not text.strip():
        raise bad("text", "text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise bad("text", f"text has {len(text)} characters; at most {MAX_TEXT_CHARS} per request")
    if not 1 <= max_mel_tokens <= MAX_MEL_TOKENS:
        raise bad("max_mel_tokens", f"max_mel_tokens must be between 1 and {MAX_MEL_TOKENS}")
    if prompt is None:
        return
    try:
        info = sf.info(io.BytesIO(prompt))
    except RuntimeError as exc:  # soundfile's LibsndfileError is one
        raise bad("prompt", f"prompt is not a readable audio file (WAV, FLAC, OGG): {exc}") from None
    if info.frames == 0:
        raise bad("prompt", "prompt holds no audio")
    if info.duration > MAX_PROMPT_S:
        raise bad("prompt", f"prompt is {info.duration:.1f} s long; at most {MAX_PROMPT_S:g} s")


@app.post("/synthesize")
def synthesize(text: str = Form(...), max_mel_tokens: int = Form(1500),
               prompt: UploadFile | None = None) -> Response:
    # MAX_PROMPT_S of 48 kHz stereo float is ~23 MB: read no more than twice that
    data = prompt.file.read(int(MAX_PROMPT_S * 48000 * 2 * 4 * 2)) if prompt is not None else None
    check(text, max_mel_tokens, data)
    model = state["model"]
    if model is None:
        raise HTTPException(503, f"the model is not loaded: {state['error']}")
    with tempfile.TemporaryDirectory() as tmp:
        voice, out = Path(tmp) / "prompt.wav", Path(tmp) / "out.wav"
        if data is not None:
            voice.write_bytes(data)
        else:
            default_voice(voice)
        with lock:
            model.infer(spk_audio_prompt=str(voice), text=text, output_path=str(out),  # type: ignore[attr-defined]
                        max_mel_tokens=max_mel_tokens, verbose=False)
        return Response(out.read_bytes(), media_type="audio/wav")
