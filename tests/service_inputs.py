"""Bad input for the example services (examples/), as a user's client would send it: each
must get a 4xx naming the field, and the service must stay healthy. Used by the CI tier
(tests/integration: the services on the CPU images) and the Index-TTS tier (the model
loaded: a good request after the bad ones synthesizes)."""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import httpx


def wav(seconds: float, *, rate: int = 16000) -> bytes:
    """A WAV of a quiet tone, written by the standard library."""
    frames = int(seconds * rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(frames)))
    return out.getvalue()


# (what is sent, the field the answer must name): each one thing wrong
INDEXTTS_BAD: list[tuple[dict[str, Any], str]] = [
    ({"data": {"text": "  "}}, "text"),
    ({"data": {"text": "x" * 601}}, "text"),
    ({"data": {"text": "Hello.", "max_mel_tokens": "-5"}}, "max_mel_tokens"),
    ({"data": {"text": "Hello.", "max_mel_tokens": "0"}}, "max_mel_tokens"),
    ({"data": {"text": "Hello.", "max_mel_tokens": "100000"}}, "max_mel_tokens"),
    ({"data": {"text": "Hello.", "max_mel_tokens": "many"}}, "max_mel_tokens"),
    ({"data": {"text": "Hello."},
      "files": {"prompt": ("voice.wav", b"this is not audio", "audio/wav")}}, "prompt"),
    ({"data": {"text": "Hello."},
      "files": {"prompt": ("voice.wav", wav(0), "audio/wav")}}, "prompt"),
    ({"data": {"text": "Hello."},
      "files": {"prompt": ("voice.wav", wav(61, rate=8000), "audio/wav")}}, "prompt"),
    ({"data": {}}, "text"),
]

ALIGN_BAD: list[tuple[Any, str]] = [
    ({"scores": [[1, 0, 0], [0, 1]]}, "scores"),  # ragged
    ({"scores": []}, "scores"),
    ({"scores": [[]]}, "scores"),
    ({"scores": [[1], [0], [1]]}, "scores"),  # more tokens than frames
    ({"scores": "diagonal"}, "scores"),
    ({"scores": [[1, "a"]]}, "scores"),
    ({}, "scores"),
]


def named_field(answer: httpx.Response) -> str:
    """The field a 422 in FastAPI's shape names: `detail[0].loc` is ["body", FIELD, ...]
    (["body"] for the body as a whole)."""
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and detail, answer.text
    loc = detail[0]["loc"]
    return str(loc[1] if len(loc) > 1 else loc[0])


def check_indextts_refuses_bad_input(url: str) -> None:
    for request, field in INDEXTTS_BAD:
        answer = httpx.post(f"{url}/synthesize", timeout=60, **request)
        assert answer.status_code == 422, (request.get("data"), answer.status_code, answer.text)
        assert named_field(answer) == field, (request.get("data"), answer.text)
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def check_align_refuses_bad_input(url: str) -> None:
    for body, field in ALIGN_BAD:
        answer = httpx.post(f"{url}/align", json=body, timeout=30)
        assert answer.status_code == 422, (body, answer.status_code, answer.text)
        assert named_field(answer) == field, (body, answer.text)
    # NaN is no JSON, but Python's json module reads it: a finite matrix is asked for
    nan = httpx.post(f"{url}/align", content=b'{"scores": [[NaN, 1.0]]}',
                     headers={"Content-Type": "application/json"}, timeout=30)
    assert nan.status_code == 422 and "finite" in nan.text, nan.text
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
