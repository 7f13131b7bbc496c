"""Issue 27: what an authenticated registry request costs. The distribution registry
checks the htpasswd bcrypt hash on every request, uncached: the factory hashes its
generated secret at cost 4; the naive side is the same registry binary with the cost
`htpasswd -B` writes by default (10), the factory's own setting before this issue."""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import bcrypt
import httpx

from basefactory.config.factory import config_path, load_factory
from basefactory.daemons.credentials import registry_auth
from basefactory.daemons.registry_server import BCRYPT_COST
from bench.common import ROOT, Figure, Report

REQUESTS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _median_ms(url: str, auth: tuple[str, str]) -> float:
    times = []
    with httpx.Client(auth=auth, timeout=30) as client:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
    return statistics.median(times)


def _registry_with_cost(cost: int, auth: tuple[str, str], folder: Path
                        ) -> tuple[subprocess.Popen[bytes], str]:
    user, password = auth
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    (folder / "htpasswd").write_text(f"{user}:{hashed}\n")
    port = _free_port()
    config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
              "http": {"addr": f"127.0.0.1:{port}"},
              "auth": {"htpasswd": {"realm": "bench", "path": str(folder / "htpasswd")}}}
    (folder / "config.yml").write_text(json.dumps(config))
    binary = shutil.which("docker-registry") or shutil.which("registry") or "docker-registry"
    proc = subprocess.Popen([binary, "serve", str(folder / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v2/"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)


def bench(report: Report) -> None:
    # $BASEFACTORY_CONFIG names another factory (its registry must be up), else this one's;
    # a relative one is taken from the repository's root
    factory = load_factory(ROOT / config_path())
    auth = registry_auth(factory)
    assert auth is not None, "the embedded registry has credentials"
    # the factory's own registry, as `up` configured it
    ours = _median_ms(f"{factory.config.registry.base_url}/v2/", auth)
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        proc, url = _registry_with_cost(10, auth, Path(tmp))
        try:
            naive = _median_ms(url, auth)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report.add(Figure(f"authenticated registry request (GET /v2/, median of {REQUESTS};"
                      f" bcrypt cost {BCRYPT_COST})", ours, naive, "ms", "<= 5 ms", ours <= 5.0,
                      "naive: the same registry with a cost-10 htpasswd (`htpasswd -B`'s"
                      " default, and the factory's before); every request pays it"))
