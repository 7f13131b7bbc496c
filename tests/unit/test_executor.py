"""`publish --executor dask://`'s own logic on a real Dask cluster in this process (no
Docker: the steps' `basefactory run` fails on a bad factory.toml, which is what these
tests need): a failure reported with its worker and message, its dependents not run, a
resource no worker offers refused before anything is submitted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from distributed import Client, LocalCluster

from basefactory.plumbing.errors import ConfigError
from basefactory.schedule.dag import Node
from basefactory.schedule.executor import _check_resources, _run_round, scheduler_address

P = "cpu-py311-torch2.13"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      resources={"docker": 1}, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def node(step_id: str, *needs: str, **resources: int) -> Node:
    kind, *parts = step_id.split(":")
    return Node(step_id, kind, parts[0], parts[-1], needs, False, None, "why",
                {"docker": 1, **resources})


def test_addresses() -> None:
    assert scheduler_address("dask://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert scheduler_address("tls://sched:8786") == "tls://sched:8786"
    for bad in ("10.0.0.5:8786", "dask://sched", "http://sched:8786", "dask://a b:1"):
        with pytest.raises(ConfigError, match="not a Dask scheduler address"):
            scheduler_address(bad)


def test_a_failed_step_names_its_worker_and_its_dependents_do_not_run(
        client: Any, tmp_path: Path) -> None:
    config = tmp_path / "factory.toml"
    config.write_text('[index]\nport = "not a port"\n')
    session = SimpleNamespace(factory=SimpleNamespace(path=config))
    todo = [node(f"platform:{P}"), node(f"image:api-lean:{P}", f"platform:{P}"),
            node(f"fit:api-lean:{P}", f"image:api-lean:{P}")]
    steps: list[Any] = []
    failed = _run_round(client, session, todo, steps, None)  # type: ignore[arg-type]
    assert steps == []
    assert len(failed) == 3
    first, *rest = failed
    assert first.startswith(f"platform:{P}: failed on worker ")
    assert "factory.toml" in first and "port" in first  # the run's own message
    assert rest == [f"image:api-lean:{P}: not run: platform:{P}, which it needs, failed",
                    f"fit:api-lean:{P}: not run: platform:{P}, which it needs, failed"]


def test_a_resource_no_worker_offers_is_refused_before_submitting(client: Any) -> None:
    _check_resources(client, [node(f"platform:{P}")])
    with pytest.raises(ConfigError, match="cuda_toolkit") as caught:
        _check_resources(client, [node(f"platform:{P}"),
                                  node(f"wheel:torchsort:{P}", cuda_toolkit=1)])
    assert "wheel:torchsort" in str(caught.value) and "--resources" in str(caught.value)
    assert all(not keys for keys in client.processing().values())


def test_a_round_refuses_a_resource_no_worker_offers_before_it_submits(
        client: Any, tmp_path: Path) -> None:
    """The round itself checks (not only a caller): nothing is submitted, so no step waits
    forever for a worker that will never come, and the first step is not even tried."""
    config = tmp_path / "factory.toml"
    config.write_text('[index]\nport = "not a port"\n')
    session = SimpleNamespace(factory=SimpleNamespace(path=config))
    submitted: list[str] = []
    spy = SimpleNamespace(scheduler_info=client.scheduler_info,
                          submit=lambda *a, **k: submitted.append(k["key"]))
    todo = [node(f"platform:{P}"), node(f"wheel:torchsort:{P}", cuda_toolkit=1)]
    with pytest.raises(ConfigError, match="cuda_toolkit"):
        _run_round(spy, session, todo, [], None)  # type: ignore[arg-type]
    assert submitted == []
