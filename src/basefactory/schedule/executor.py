"""`publish --executor dask://HOST:PORT`: the DAG of `basefactory plan`, run by a Dask
distributed scheduler instead of this process's thread pool.

Each step that is not current becomes one task whose dependencies are the tasks of its
`needs`, asking for the step's resources (every step `docker`, a CUDA compile
`cuda_toolkit`): a worker started with `--resources docker=1` runs one step at a time,
on its own host's Docker engine. The task runs `basefactory run STEP_ID` in a
subprocess, the same command a CI job runs, so a worker needs only this package and the
factory folder at the same path. When a worker dies, the scheduler reruns its task on
another worker (Dask's `allowed-failures`); a step that fails is not retried (a build
that failed once fails again) and its dependents do not run.

A plan is made on what is published now, so a platform that is not probed yet hides its
wheels and images: those are planned and run in a second round, once it is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from basefactory.pipeline import Step
from basefactory.plumbing import log
from basefactory.plumbing.errors import BuildError, ConfigError, ServiceError
from basefactory.schedule.dag import Node, build, order
from basefactory.session import Session
from basefactory.wheels.publish import prepare_builder

ADDRESS = re.compile(r"^(?:dask|tcp|tls)://[^\s/:]+:\d+$")
START_HINT = ("start a scheduler (`dask scheduler --port 8786`) and on each build host a"
              " worker: `dask worker tcp://SCHEDULER:8786 --nthreads 1 --resources docker=1`"
              " (add cuda_toolkit=1 where nvcc is)")


class StepFailed(Exception):
    """A step's `basefactory run` failed on a worker (picklable: it crosses the wire)."""

    def __init__(self, step_id: str, worker: str, exit_code: int, tail: str) -> None:
        super().__init__(step_id, worker, exit_code, tail)
        self.step_id, self.worker, self.exit_code, self.tail = step_id, worker, exit_code, tail

    def __str__(self) -> str:
        return f"{self.step_id} failed on worker {self.worker} (exit {self.exit_code}):\n{self.tail}"


def run_remote(config: str, step_id: str, *needs: object) -> dict[str, Any]:
    """The task a worker runs: `basefactory run STEP_ID` with this worker's environment
    (its DOCKER_HOST). `needs` are the results of the steps it depends on: Dask passes
    them only to order the tasks."""
    from distributed import get_worker

    worker = str(get_worker().name)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "basefactory", "--config", config, "run", step_id, "--json",
         "--wait", "3600"], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode:
        raise StepFailed(step_id, worker, proc.returncode, proc.stderr[-3000:])
    return {"step": step_id, "worker": worker, "pid": os.getpid(),
            "duration_s": round(time.monotonic() - started, 2),
            "results": json.loads(proc.stdout)["results"]}


@dataclass
class Outcome:
    steps: list[Step]
    failed: list[str]  # "<step id>: <why>" of each step that failed or could not run
    # step id -> seconds its `basefactory run` took on the worker (the step's own work
    # plus the process: interpreter, config, locks, daemons' health, session)
    runs: dict[str, float] = field(default_factory=dict)


def scheduler_address(executor: str) -> str:
    """dask://HOST:PORT (or tcp://, tls://) as Dask's client takes it."""
    if not ADDRESS.match(executor):
        raise ConfigError(f"--executor {executor}: not a Dask scheduler address",
                          hint="write dask://HOST:PORT, e.g. dask://127.0.0.1:8786")
    return executor.replace("dask://", "tcp://", 1)


def publish_on_dask(session: Session, executor: str, *, platforms: list[str] | None = None,
                    only: list[str] | None = None, fits: bool = True,
                    on_done: Callable[[Step], None] | None = None) -> Outcome:
    address = scheduler_address(executor)
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--executor dask:// needs Dask's `distributed` on this host",
                          hint="pip install 'basefactory[dask]'") from None
    try:
        client = Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ServiceError(f"no Dask scheduler answers at {address}: {exc}",
                           hint=START_HINT) from None
    steps: list[Step] = []
    runs: dict[str, float] = {}
    try:
        known: set[str] = set()
        while True:  # a round per platform probe: see the module's docstring
            nodes = [n for n in build(session, platforms=platforms, only=only)
                     if fits or n.kind != "fit"]
            steps += [_current(n) for n in nodes if n.current and n.id not in known]
            known |= {n.id for n in nodes}
            todo = [n for n in order(nodes) if not n.current]
            if not todo:
                return Outcome(steps, [], runs)
            failed = _run_round(client, session, todo, steps, on_done, runs)
            if failed or not any(n.kind == "platform" for n in todo):
                return Outcome(steps, failed, runs)
    finally:
        client.close()


def _run_round(client: Any, session: Session, todo: list[Node], steps: list[Step],
               on_done: Callable[[Step], None] | None,
               runs: dict[str, float] | None = None) -> list[str]:
    from distributed import as_completed

    _check_resources(client, todo)
    # the builders' apt step runs once, here; workers pull the result from the registry
    # (build hosts often reach no apt mirror, only the factory's index and registry)
    for platform in dict.fromkeys(n.platform for n in todo if n.kind == "wheel"):
        prepare_builder(session, platform)
    config = str(session.factory.path.resolve())
    futures: dict[str, Any] = {}
    for node in todo:
        futures[node.id] = client.submit(
            run_remote, config, node.id, *(futures[n] for n in node.needs if n in futures),
            key=f"{node.id}@{time.time_ns()}", resources=node.resources, pure=False,
            retries=0)
        log.detail(f"submitted {node.id} ({node.reason})")
    by_key = {f.key: node_id for node_id, f in futures.items()}
    failed: list[str] = []
    for future in as_completed(list(futures.values()), loop=client.loop):
        step_id = by_key[future.key]
        if future.status == "finished":
            done = future.result()
            for data in done["results"]:
                step = Step(**{**data, "builder": done["worker"]})
                steps.append(step)
                if on_done is not None:
                    on_done(step)
            log.info(f"{step_id}: done on {done['worker']} in {done['duration_s']}s")
            if runs is not None:
                runs[step_id] = done["duration_s"]
            continue
        exc = future.exception()
        if isinstance(exc, StepFailed) and exc.step_id == step_id:
            failed.append(f"{step_id}: failed on worker {exc.worker}:\n{exc.tail.strip()}")
        elif isinstance(exc, StepFailed):
            failed.append(f"{step_id}: not run: {exc.step_id}, which it needs, failed")
        else:  # the scheduler gave up on it (e.g. its workers kept dying)
            failed.append(f"{step_id}: {type(exc).__name__}: {exc}")
    return failed


def _check_resources(client: Any, todo: list[Node]) -> None:
    """A task asking for a resource no worker has would wait forever: refuse it now."""
    workers = client.scheduler_info().get("workers", {}).values()
    if not workers:
        raise ServiceError("the Dask scheduler has no workers", hint=START_HINT)
    offered = [w.get("resources", {}) for w in workers]
    for node in todo:
        if not any(all(have.get(r, 0) >= n for r, n in node.resources.items())
                   for have in offered):
            raise ConfigError(
                f"{node.id} needs a worker with {node.resources}; the scheduler's workers"
                f" offer {offered}", hint=START_HINT)


def _current(node: Node) -> Step:
    return Step(node.kind, node.name, node.platform, "current", node.reason, 0.0, None, "",
                builder="-")


def raise_failures(outcome: Outcome) -> None:
    if outcome.failed:
        raise BuildError(f"{len(outcome.failed)} step(s) did not publish:\n"
                         + "\n".join(outcome.failed),
                         hint="the steps listed as done are published; fix the failure and"
                         " publish again (what is current is skipped)")
