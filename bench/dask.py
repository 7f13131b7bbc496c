"""Issue 29: a publish run by Dask on 1 and on 2 workers, beside the one-process publish
(`publish --jobs 2`, the way a team with one build host runs it), and what running a step
as its own `basefactory run` process costs per step.

In a factory of its own (its own devpi and registry on other ports, the demo platform
bootstrapped from the engine's cached base), with four small C-extension recipes whose
sources change per side, so each side compiles, tests and uploads four wheels. Workers
run on this machine's engine: on 2 cores, two workers are two concurrent builds, not two
hosts' worth of CPU (the multi-host test shows placement over real separate engines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import port, write_factory
from tests.integration.test_wheels import make_c_project

from bench.common import ROOT, Figure, Report, run

WORK = ROOT / "bench" / "work" / "dask"
RECIPES = [f"benchdask{i}" for i in range(1, 5)]
DASK = str(Path(sys.executable).with_name("dask"))


def bf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "basefactory", "--config", str(config), *args])


def recipes(config: Path, side: str) -> None:
    """The four recipes, their sources marked with `side` (new inputs: all build)."""
    for name in RECIPES:
        src = WORK / "src" / side / name
        if not src.exists():
            make_c_project(src)
            pyproject = src / "pyproject.toml"
            pyproject.write_text(pyproject.read_text().replace('name = "fastadd"',
                                                               f'name = "{name}"'))
        (src / "fastadd" / "side.txt").write_text(side)
        (config.parent / "recipes" / f"{name}.toml").write_text(
            f'project = "{name}"\n[source]\npath = "{src}"\n'
            "[test]\ncommand = \"python -c 'import fastadd; assert fastadd.add(2, 2) == 4'\"\n")


def publish(config: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    done = bf(config, "publish", "--json", *extra, *(a for r in RECIPES for a in ("--only", r)))
    took = time.monotonic() - started
    data = json.loads(done.stdout)
    built = [s for s in data["steps"] if s["kind"] == "wheel" and s["result"] == "built"]
    assert len(built) == len(RECIPES), data["steps"]
    return took, data


def bench(report: Report) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    root = WORK / "factory"
    for folder in ("recipes", "images"):
        (root / folder).mkdir(parents=True)
    config = write_factory(root, index_port=port(3161), registry_port=port(5021))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bf(config, "up")
        recipes(config, "warm")
        publish(config, "--jobs", "2")  # the platform, the builder, pip's caches: once
        recipes(config, "local")
        local, _ = publish(config, "--jobs", "2")
        scheduler_port = port(8796)
        logs = WORK / "logs"
        logs.mkdir()
        procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port),
             "--no-dashboard"], stdout=(logs / "scheduler.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True))
        address = f"dask://127.0.0.1:{scheduler_port}"
        timings: dict[int, float] = {}
        overheads: list[float] = []
        for n in (1, 2):
            procs.append(subprocess.Popen(
                [DASK, "worker", f"tcp://127.0.0.1:{scheduler_port}", "--name", f"w{n}",
                 "--nthreads", "1", "--resources", "docker=1", "--no-nanny", "--no-dashboard"],
                stdout=(logs / f"w{n}.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True))
            _wait_for_workers(scheduler_port, n)
            recipes(config, f"dask{n}")
            timings[n], data = publish(config, "--executor", address)
            runs = data["worker_runs_s"]
            assert isinstance(runs, dict)
            for step in data["steps"]:
                step_id = f"wheel:{step['name']}:{step['platform']}"
                if step_id in runs:
                    overheads.append(runs[step_id] - step["duration_s"])
        report.add(Figure(f"publish of {len(RECIPES)} compiled wheels: Dask, 2 workers vs 1",
                          timings[2], timings[1], "s", "faster than 1 worker",
                          timings[2] < timings[1],
                          "both workers on this 2-core machine's one engine: concurrency,"
                          " not a second host's CPU"))
        report.add(Figure(f"publish of {len(RECIPES)} compiled wheels: Dask 2 workers vs"
                          " `publish --jobs 2` (one process)", timings[2], local, "s",
                          "within 1.3x of one process", timings[2] <= 1.3 * local,
                          "the one-process publish is the naive side"))
        per_step = statistics.median(overheads)
        report.add(Figure("scheduling overhead per step (median: a worker's `basefactory run`"
                          " beyond the step's own work)", per_step, None, "s", "< 3 s",
                          per_step < 3.0, f"{len(overheads)} steps"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config), "down"],
                       capture_output=True)


def _wait_for_workers(scheduler_port: int, n: int) -> None:
    from distributed import Client

    with Client(f"tcp://127.0.0.1:{scheduler_port}", timeout="30s") as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(n, timeout=120)
