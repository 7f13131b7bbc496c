"""The stack's front door on the lean API tier: no torch, it only calls the model services.

Upstreams come from the environment (`TTS_URL`, `LLM_URL`); one left empty is not part of
this deployment (the CPU profile runs no LLM). /health answers 200 only when every
configured upstream answers its own /health, so compose's healthcheck on this service says
the whole stack is up, not just this process.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

app = FastAPI(title="example gateway")
TIMEOUT = httpx.Timeout(float(os.environ.get("UPSTREAM_TIMEOUT_S", "30")), connect=2.0)


def _upstreams() -> dict[str, str]:
    named = {"tts": os.environ.get("TTS_URL", ""), "llm": os.environ.get("LLM_URL", "")}
    return {name: url.rstrip("/") for name, url in named.items() if url}


def _upstream(name: str) -> str:
    url = _upstreams().get(name)
    if url is None:
        raise HTTPException(404, f"no {name} service in this deployment ({name.upper()}_URL is unset)")
    return url


@app.get("/health")
async def health() -> JSONResponse:
    states: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(3.0)) as client:
        for name, url in _upstreams().items():
            try:
                answer = await client.get(f"{url}/health")
                states[name] = "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                states[name] = f"unreachable ({type(exc).__name__})"
    healthy = all(state == "ok" for state in states.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", "upstreams": states},
                        status_code=200 if healthy else 503)


async def _forward(name: str, path: str, body: Any) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        try:
            answer = await client.post(f"{_upstream(name)}{path}", json=body)
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"{name} service did not answer: {type(exc).__name__}") from exc
    if answer.status_code >= 400:
        # the upstream's own answer (a 422 names the field), as it gave it
        return JSONResponse(_json_or_text(answer), status_code=answer.status_code)
    return answer.json()


def _json_or_text(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return {"detail": answer.text}


async def _body(request: Request) -> Any:
    """The request's JSON object; anything else is the client's mistake (422), not ours."""
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(422, [{"loc": ["body"], "msg": "the body is not JSON",
                                   "type": "json_invalid"}]) from None
    if not isinstance(body, dict):
        raise HTTPException(422, [{"loc": ["body"], "msg": "the body must be a JSON object",
                                   "type": "dict_type"}])
    return body


@app.post("/align")
async def align(request: Request) -> Any:
    return await _forward("tts", "/align", await _body(request))


@app.post("/v1/completions")
async def completions(request: Request) -> Any:
    # vLLM's OpenAI-compatible server, passed through unchanged
    return await _forward("llm", "/v1/completions", await _body(request))
