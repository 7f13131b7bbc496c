"""`publish --executor dask://`: the publish DAG run by a real Dask scheduler and two
workers, each on a build host of its own (a network namespace made by the test, with its
own dockerd, sharing the session's devpi and registry): steps land on both, a worker
killed mid-build has its step rerun on the other, and what is published is what a
one-host publish plans (every step current, same input digests, same proofs).

It rebuilds test_scale_out's projects (spread1, spread2) from changed sources instead of
adding projects: every tested wheel of the platform is a fit candidate, so each new
project would add a fit test per image to every later publish of the session (and to
test_fits' matrix, which this file sorts after)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from basefactory.platforms.publish import PlatformResult
from basefactory.refs import platform_index
from basefactory.session import Session
from tests.helpers import PLATFORM, port, require
from tests.hosts import Host
from tests.integration.test_wheels import make_c_project
from tests.reliability.helpers import bf

DASK = str(Path(sys.executable).with_name("dask"))


class Cluster:
    def __init__(self, scheduler_port: int, hosts: list[Host], logs: Path) -> None:
        self.port = scheduler_port
        self.hosts = hosts
        self.logs = logs
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def address(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def start_worker(self, host: Host) -> None:
        name = f"w{host.n}"
        self.workers[name] = host.spawn(
            [DASK, "worker", f"tcp://{host.here}:{self.port}", "--host", host.there,
             "--name", name, "--nthreads", "1", "--resources", "docker=1", "--no-nanny",
             "--no-dashboard"], self.logs / f"{name}.log")

    def processing(self) -> dict[str, list[str]]:
        """worker name -> the keys of the tasks it runs now."""
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{self.port}", timeout="10s") as client:
            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
            return {names.get(a, a): list(keys) for a, keys in client.processing().items()}

    def wait_for_workers(self, n: int) -> None:
        deadline = time.monotonic() + 120
        while len(self.processing()) < n:
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.5)

    def tail(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-1500:]}" for p in self.logs.glob("*.log"))


@pytest.fixture(scope="module")
def cluster(session: Session, platform: PlatformResult,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require(os.geteuid() == 0, "build hosts in network namespaces need root")
    require(Path(DASK).exists(), "Dask's `distributed` is not installed (make test installs it)")
    logs = tmp_path_factory.mktemp("dask")
    config = session.factory.config
    hosts = [Host(n, [config.index.port, config.registry.port]) for n in (1, 2)]
    scheduler_port = port(8786)
    with (logs / "scheduler.log").open("wb") as out:
        scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "0.0.0.0", "--port", str(scheduler_port),
             "--no-dashboard"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = Cluster(scheduler_port, hosts, logs)
    try:
        for host in hosts:
            host.start()
            cluster.start_worker(host)
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        for proc in [*cluster.workers.values(), scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for host in hosts:
            host.stop()


def c_recipe(session: Session, folder: Path, name: str, *, setup_prefix: str = "") -> None:
    """A recipe of a small C extension, its own project `name` (setup.py may start with
    `setup_prefix`, e.g. a sleep that makes its build slow)."""
    make_c_project(folder)
    (folder / "fastadd" / "n.txt").write_text(name)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "fastadd"', f'name = "{name}"'))
    setup = folder / "setup.py"
    setup.write_text(setup_prefix + setup.read_text())
    (session.factory.recipes_dir / f"{name}.toml").write_text(
        f'project = "{name}"\n[source]\npath = "{folder}"\n'
        "[test]\ncommand = \"python -c 'import fastadd; assert fastadd.add(2, 2) == 4'\"\n")


def plan_of(session: Session, names: list[str]) -> dict[str, dict[str, object]]:
    done = bf(session.factory.path, "plan", "--json", *(a for n in names for a in ("--only", n)))
    assert done.returncode == 0, done.stderr[-2000:]
    return {s["id"]: s for s in json.loads(done.stdout)["steps"]}


def test_dask_spreads_steps_over_two_hosts_and_reruns_a_killed_workers_step(
        session: Session, cluster: Cluster, tmp_path: Path) -> None:
    names = ["spread1", "spread2"]
    try:
        for name in names:
            c_recipe(session, tmp_path / name, name)
        before = plan_of(session, names)
        wheel_ids = [f"wheel:{n}:{PLATFORM}" for n in names]
        assert [before[i]["current"] for i in wheel_ids] == [False] * 2

        # two independent steps, two hosts with one `docker` slot each: one step on each
        done = bf(session.factory.path, "publish", "--executor", cluster.address, "--json",
                  "--only", names[0], "--only", names[1])
        assert done.returncode == 0, done.stderr[-3000:] + cluster.tail()
        steps = {s["name"]: s for s in json.loads(done.stdout)["steps"] if s["kind"] == "wheel"}
        assert {steps[n]["result"] for n in names} == {"built"}
        assert {steps[n]["builder"] for n in names} == {"w1", "w2"}
        digests = {i: plan_of(session, names)[i]["input_digest"] for i in wheel_ids}
        assert digests == {i: before[i]["input_digest"] for i in wheel_ids}

        # a slow build of spread1 (changed source: new inputs)
        c_recipe(session, tmp_path / "slow", names[0], setup_prefix="import time\ntime.sleep(20)\n")
        before = plan_of(session, names)
        assert not before[wheel_ids[0]]["current"] and before[wheel_ids[1]]["current"]

        # a host goes away mid-build: its step is rerun on the other host
        publish = subprocess.Popen(
            [sys.executable, "-m", "basefactory", "--config", str(session.factory.path),
             "publish", "--executor", cluster.address, "--json", "--only", names[0]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = _kill_the_host_building(cluster, names[0])
        out, err = publish.communicate(timeout=600)
        assert publish.returncode == 0, err[-3000:] + cluster.tail()
        steps = {s["name"]: s for s in json.loads(out)["steps"]}
        survivor = ({"w1", "w2"} - {killed}).pop()
        assert (steps[names[0]]["result"], steps[names[0]]["builder"]) == ("built", survivor)

        # what a one-host publish would plan now: nothing, on the same input digests
        after = plan_of(session, names)
        assert all(after[i]["current"] for i in after), after
        assert [after[i]["input_digest"] for i in wheel_ids] == \
            [before[i]["input_digest"] for i in wheel_ids]
        for name in names:
            files = session.devpi.release_files(platform_index(session.factory, PLATFORM), name)
            assert files and all(f.toxresults for f in files), name
        assert str(steps[names[0]]["tag"]) in {f.filename for f in session.devpi.release_files(
            platform_index(session.factory, PLATFORM), names[0])}
    finally:
        for name in names:
            (session.factory.recipes_dir / f"{name}.toml").unlink(missing_ok=True)


def _kill_the_host_building(cluster: Cluster, recipe: str) -> str:
    """Wait until a worker runs `recipe`'s step and its engine has the build's container
    running; then kill that worker with everything it started (SIGKILL to its process
    group), and return its name."""
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, cluster.tail()
        running = [w for w, keys in cluster.processing().items()
                   if any(k.startswith(f"wheel:{recipe}:") for k in keys)]
        if running:
            host = next(h for h in cluster.hosts if f"w{h.n}" == running[0])
            if host.containers():
                break
        time.sleep(0.5)
    time.sleep(3)  # inside the build's sleep
    worker = cluster.workers[running[0]]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    return running[0]
