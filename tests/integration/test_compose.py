"""The compose stack of examples/compose: its CPU profile brought up from the images this
session published (Debian's docker-compose against the real engine and registry), every
healthcheck passing, each service called once, then taken down; its GPU profile rendered
and checked (no GPU here to run it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from basefactory.images.plan import ImageResult
from basefactory.refs import image_ref
from basefactory.session import Session
from tests.helpers import PLATFORM, ROOT, port, require, wait_http
from tests.service_inputs import named_field

STACK = ROOT / "examples" / "compose" / "docker-compose.yml"


def _compose() -> str:
    found = shutil.which("docker-compose")
    require(found is not None, "docker-compose (Debian's docker-compose; make setup installs it)")
    assert found is not None
    return found


def _run(args: list[str], env: dict[str, str], *, timeout: float = 600) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[3:])}: {done.stderr[-3000:]}"
    return done.stdout


def _config(profile: str, env: dict[str, str]) -> dict[str, Any]:
    rendered = _run([_compose(), "-f", str(STACK), "--profile", profile, "config"], env)
    loaded: dict[str, Any] = yaml.safe_load(rendered)
    return loaded


def _env(**values: str) -> dict[str, str]:
    # only what the test sets, so a developer's shell or examples/compose/.env cannot steer it
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **values}


def test_the_gpu_profile_reserves_a_gpu_and_every_service_has_health_and_restart() -> None:
    env = _env(COMPOSE_PROJECT_NAME="bf-config")
    # Compose v1's `config` renders every service; the profiles say which runs where
    services = _config("gpu", env)["services"]
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles == {"gateway": [], "tts": ["gpu"], "indextts": ["gpu"], "llm": ["gpu"],
                        "tts-cpu": ["cpu"]}
    for name in ("tts", "indextts", "llm"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
    assert services["llm"]["image"] == "127.0.0.1:5000/factory/llm-deps:cu130-py311-torch2.14"
    assert services["llm"]["command"][:2] == ["vllm", "serve"]
    assert "deploy" not in services["tts-cpu"]
    assert services["indextts"]["build"]["args"]["BASE"] == \
        "127.0.0.1:5000/factory/indextts-deps:cu130-py311-torch2.11"
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"][0] == "CMD", name
        # the serving defaults come from the images' ENV, not a second copy here
        assert "VLLM_WORKER_MULTIPROC_METHOD" not in service.get("environment", {}), name


@pytest.fixture(scope="module")
def stack(session: Session, published: dict[str, ImageResult]) -> Iterator[dict[str, str]]:
    assert {"tts-deps", "api-lean"} <= set(published)
    project = f"bftest{port(0)}"
    env = _env(COMPOSE_PROJECT_NAME=project, REGISTRY=session.factory.config.registry.address,
               GATEWAY_PORT=str(port(18001)), TTS_PORT=str(port(18080)))
    base = [_compose(), "-f", str(STACK), "--profile", "cpu"]
    try:
        _run([*base, "up", "-d", "--build"], env)
        yield {"project": project, **env}
    finally:
        subprocess.run([*base, "down", "--volumes", "--rmi", "local", "--remove-orphans"],
                       env=env, capture_output=True, timeout=300)


def _health(docker: str, containers: list[str]) -> dict[str, str]:
    states = {}
    for container in containers:
        out = subprocess.run([docker, "inspect", "--format",
                              "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                              container], capture_output=True, text=True, check=True).stdout
        name, _, status = out.strip().lstrip("/").partition(" ")
        states[name] = status or "no healthcheck"
    return states


def test_the_cpu_profile_comes_up_healthy_and_answers(session: Session,
                                                     stack: dict[str, str]) -> None:
    docker = session.docker.client.path
    containers = _run([_compose(), "-f", str(STACK), "--profile", "cpu", "ps", "-q"],
                      stack).split()
    assert len(containers) == 2
    deadline = time.monotonic() + 180
    while set((states := _health(docker, containers)).values()) != {"healthy"}:
        assert "unhealthy" not in states.values(), states
        assert time.monotonic() < deadline, f"not healthy after 180 s: {states}"
        time.sleep(2)
    assert sorted(states) == sorted(f"{stack['project']}_{s}_1" for s in ("gateway", "tts-cpu"))

    tts = f"http://127.0.0.1:{stack['TTS_PORT']}"
    gateway = f"http://127.0.0.1:{stack['GATEWAY_PORT']}"
    assert wait_http(f"{tts}/health").json() == {"status": "ok", "torch": "2.13.0+cpu"}
    scores = {"scores": [[1, 0, 0, 0], [0, 1, 1, 1]]}
    direct = httpx.post(f"{tts}/align", json=scores, timeout=30)
    assert direct.status_code == 200 and direct.json() == {"path": [[1, 0, 0, 0], [0, 1, 1, 1]]}
    # through the gateway: the lean API tier reaches the TTS service by its compose name
    assert httpx.get(f"{gateway}/health", timeout=10).json() == {
        "status": "ok", "upstreams": {"tts": "ok"}}
    routed = httpx.post(f"{gateway}/align", json=scores, timeout=30)
    assert routed.status_code == 200 and routed.json() == direct.json()
    # bad input through the gateway: the TTS service's 422 as it gave it, naming the
    # field; the gateway's own 422 for a body that is no JSON object (it was a 500)
    ragged = httpx.post(f"{gateway}/align", json={"scores": [[1, 0], [1]]}, timeout=30)
    assert ragged.status_code == 422 and named_field(ragged) == "scores", ragged.text
    for content in (b"not json", b"[1, 2]"):
        bad = httpx.post(f"{gateway}/align", content=content, timeout=10,
                         headers={"Content-Type": "application/json"})
        assert bad.status_code == 422 and named_field(bad) == "body", bad.text
    assert httpx.get(f"{gateway}/health", timeout=10).status_code == 200
    assert httpx.post(f"{gateway}/align", json=scores, timeout=30).json() == direct.json()
    # no LLM on the CPU profile: the gateway says so instead of hanging or answering 500
    missing = httpx.post(f"{gateway}/v1/completions", json={"prompt": "hi"}, timeout=10)
    assert missing.status_code == 404 and "LLM_URL is unset" in missing.text

    # each service is its published base plus its own layers: FROM, not a rebuilt stack
    for service, base in (("tts-cpu", "tts-deps"), ("gateway", "api-lean")):
        below = _layers(docker, image_ref(session.factory, base, PLATFORM))
        own = _layers(docker, f"{stack['project']}_{service}")
        assert own[:len(below)] == below and 0 < len(own) - len(below) <= 2, service


def _layers(docker: str, image: str) -> list[str]:
    out = subprocess.run([docker, "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                          image], capture_output=True, text=True, check=True).stdout
    layers: list[str] = yaml.safe_load(out)
    return layers


def test_a_stopped_upstream_turns_the_gateway_unhealthy(session: Session,
                                                       stack: dict[str, str]) -> None:
    """The gateway's health is the stack's: with the TTS service stopped it answers 503 and
    names it, so compose (and an orchestrator reading the healthcheck) sees the outage."""
    base = [_compose(), "-f", str(STACK), "--profile", "cpu"]
    gateway = f"http://127.0.0.1:{stack['GATEWAY_PORT']}"
    deadline = time.monotonic() + 120
    while wait_http(f"{gateway}/health", timeout=120).status_code != 200:
        assert time.monotonic() < deadline, "the gateway never saw the TTS service"
        time.sleep(1)
    _run([*base, "stop", "tts-cpu"], stack)
    down = httpx.get(f"{gateway}/health", timeout=10)
    assert down.status_code == 503
    assert down.json()["status"] == "degraded"
    assert down.json()["upstreams"]["tts"].startswith("unreachable")
