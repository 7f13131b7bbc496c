"""Issue 25: seed 001's Index-TTS service built three ways, side by side in one run, each
without any build cache or pip cache (a fresh CI runner), the FROM image's layers already
on the engine:

- "before" (the seed's first Dockerfile): a slim Python (the TTS platform's slim image:
  Debian + CPython 3.11, no torch, as python:3.11-slim) + torch 2.11 + torchaudio + Index-TTS
  and the server's packages from PyPI (through the index's mirror);
- "after" (the seed's fix): the base that already has torch (the platform's base, as the seed
  used NVIDIA's image), Index-TTS and the server's packages installed with uv, which keeps
  the installed torch;
- ours: FROM indextts-deps plus the service's code.

Neither seed Dockerfile compiles BigVGAN's kernel or builds the text normalizer's cache
(the image does both); their images would JIT-compile the kernel at run time (which fails
with CUDA 13) and build the FSTs on first use. Also: each image's size, and whether torch
is the base's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from basefactory.refs import base_ref, image_ref, slim_ref
from bench.common import ROOT, WORK, Figure, Report, run, session, timed

PLATFORM = "cu130-py311-torch2.11"
SERVER = "fastapi uvicorn soundfile python-multipart"
APT = ("RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libsndfile1"
       " && rm -rf /var/lib/apt/lists/*\n")
BEFORE = f"""\
FROM {{slim}}
ARG PIP_INDEX_URL
{APT}RUN pip install --no-cache-dir torch==2.11.0 torchaudio==2.11.0 tts-webui.index-tts==2.0.1 {SERVER}
WORKDIR /app
COPY app.py .
CMD ["python", "-m", "uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8080"]
"""
AFTER = f"""\
FROM {{base}}
ARG PIP_INDEX_URL
ENV UV_INDEX_URL=$PIP_INDEX_URL
{APT}RUN pip install --no-cache-dir uv \\
    && uv pip install --no-cache --python "$(command -v python)" tts-webui.index-tts==2.0.1 {SERVER}
WORKDIR /app
COPY app.py .
CMD ["python", "-m", "uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8080"]
"""


def _context(work: Path, name: str, dockerfile: str | None) -> Path:
    context = work / name
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "indextts-service", context)
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    return context


def bench(report: Report) -> None:
    s = session()
    docker = s.docker.client.path
    work = WORK / "indextts"
    work.mkdir(parents=True, exist_ok=True)
    ours_base = image_ref(s.factory, "indextts-deps", PLATFORM)
    base, slim = base_ref(s.factory, PLATFORM), slim_ref(s.factory, PLATFORM)
    mirror = s.devpi.simple_url(s.factory.config.index.mirror)
    for ref in (ours_base, base, slim):
        run([docker, "pull", ref])
    index = ("--build-arg", f"PIP_INDEX_URL={mirror}")
    sides = {
        "before": (_context(work, "before", BEFORE.format(slim=slim)), index),
        "after": (_context(work, "after", AFTER.format(base=base)), index),
        "ours": (_context(work, "ours", None), ("--build-arg", f"BASE={ours_base}")),
    }
    seconds, sizes, torches = {}, {}, {}
    for name, (context, args) in sides.items():
        tag = f"bench/indextts-{name}:latest"
        argv = [docker, "build", "--no-cache", "--network", "host", "-t", tag, *args, str(context)]
        seconds[name] = timed(lambda argv=argv: run(argv))
        sizes[name] = int(json.loads(run([docker, "image", "inspect", tag]).stdout)[0]["Size"])
        torches[name] = run([docker, "run", "--rm", tag, "python", "-c",
                             "import torch, indextts; print(torch.__version__, torch.__file__)"]
                            ).stdout.strip()
        print(f"  {name}: {seconds[name]:.1f} s, {sizes[name] / 1e9:.2f} GB, torch {torches[name]}",
              flush=True)
    same_torch = torches["after"] == torches["ours"]
    report.add(Figure("seed 001's Index-TTS service, cold build: FROM indextts-deps vs the"
                      " seed's 'before' (slim Python + torch + Index-TTS from PyPI)",
                      seconds["ours"], seconds["before"], "s", ">= 20x",
                      seconds["before"] / seconds["ours"] >= 20,
                      f"no build cache, no pip cache, FROM layers on the engine; images"
                      f" {sizes['ours'] / 1e9:.2f} GB (ours) vs {sizes['before'] / 1e9:.2f} GB"))
    report.add(Figure("seed 001's Index-TTS service, cold build: FROM indextts-deps vs the"
                      " seed's 'after' (the torch base + uv, which keeps its torch)",
                      seconds["ours"], seconds["after"], "s", ">= 10x",
                      seconds["after"] / seconds["ours"] >= 10,
                      f"'after' kept the base's torch: {same_torch}; images"
                      f" {sizes['ours'] / 1e9:.2f} GB (ours, with the prebuilt kernel and"
                      f" normalizer cache) vs {sizes['after'] / 1e9:.2f} GB"))
    run([docker, "image", "rm", "--force", *(f"bench/indextts-{n}:latest" for n in sides)])
