"""A downstream TTS-side service: its image is `FROM tts-deps` plus this file.

It uses a compiled wheel the factory built against the platform's torch
(monotonic-alignment-search) and the stack tts-deps ships (torch, numpy, fastapi).
"""

from __future__ import annotations

import torch
from fastapi import FastAPI
from monotonic_alignment_search import maximum_path
from pydantic import BaseModel

app = FastAPI(title="example tts-service")


class AlignRequest(BaseModel):
    scores: list[list[float]]  # [text tokens][audio frames]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "torch": torch.__version__}


@app.post("/align")
def align(request: AlignRequest) -> dict[str, list[list[int]]]:
    value = torch.tensor([request.scores], dtype=torch.float32)
    path = maximum_path(value, torch.ones_like(value), "cython")
    return {"path": path[0].to(torch.int64).tolist()}
