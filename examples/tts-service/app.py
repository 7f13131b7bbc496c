"""A downstream TTS-side service: its image is `FROM tts-deps` plus this file.

It uses a compiled wheel the factory built against the platform's torch
(monotonic-alignment-search) and the stack tts-deps ships (torch, numpy, fastapi).
"""

from __future__ import annotations

import math
import os

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from monotonic_alignment_search import maximum_path
from pydantic import BaseModel, field_validator

app = FastAPI(title="example tts-service")
# a bigger matrix is a client's mistake, not a reason to run out of memory
MAX_CELLS = int(os.environ.get("ALIGN_MAX_CELLS", "4000000"))


class AlignRequest(BaseModel):
    scores: list[list[float]]  # [text tokens][audio frames]

    @field_validator("scores")
    @classmethod
    def _a_finite_matrix(cls, scores: list[list[float]]) -> list[list[float]]:
        # pydantic answers these with a 422 that names `scores`, instead of torch's 500
        if not scores or not scores[0]:
            raise ValueError("scores must have at least one row and one column")
        if any(len(row) != len(scores[0]) for row in scores):
            raise ValueError("every row of scores must have the same length")
        if len(scores) > len(scores[0]):
            raise ValueError("scores needs at least as many audio frames (columns) as text"
                             " tokens (rows) for a monotonic path")
        if len(scores) * len(scores[0]) > MAX_CELLS:
            raise ValueError(f"scores has {len(scores) * len(scores[0])} cells; at most {MAX_CELLS}")
        if not all(math.isfinite(v) for row in scores for v in row):
            raise ValueError("scores must be finite numbers")
        return scores


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's 422 without the `input` it echoes: a 4-million-cell matrix would come back
    # whole, and a NaN in it (Python's json reads one) cannot be written as JSON at all
    return JSONResponse({"detail": [{key: error[key] for key in ("type", "loc", "msg")}
                                    for error in exc.errors()]}, status_code=422)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "torch": torch.__version__}


@app.post("/align")
def align(request: AlignRequest) -> dict[str, list[list[int]]]:
    value = torch.tensor([request.scores], dtype=torch.float32)
    path = maximum_path(value, torch.ones_like(value), "cython")
    return {"path": path[0].to(torch.int64).tolist()}
