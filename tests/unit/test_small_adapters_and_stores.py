"""Small modules' own logic, without services: the HTTP clients' TLS (adapters/http.py),
a bulk-read record's parsing (proofs/store_devpi.py), where a fingerprint lives
(platforms/store.py), and a step refused before anything runs (schedule/run.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.adapters import http
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing.errors import ConfigError
from basefactory.proofs import Kind, Proof, Subject, store_devpi
from basefactory.schedule.run import run_step
from tests.helpers import small_factory


def test_the_system_trust_store_is_loaded_only_for_https_and_once() -> None:
    http.context.cache_clear()
    plain = http.client("http://127.0.0.1:3141", timeout=5)
    assert http.context.cache_info().currsize == 0  # loading it costs ~60 ms of every `up`
    secure = [http.client("https://devpi.example", timeout=5) for _ in range(2)]
    info = http.context.cache_info()
    assert (info.currsize, info.misses) == (1, 1)
    for client in (plain, *secure):
        client.close()


def test_a_registry_with_its_own_ca_never_loads_the_system_store(tmp_path: Path) -> None:
    """The token registry's no-op publish paid ~30 ms for a system store it never used."""
    from basefactory.adapters.registry_api import Registry

    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    http.context.cache_clear()
    with Registry("https://registry.example", tls=http.Tls(ca_bundle=bundle)):
        pass
    info = http.context.cache_info()
    assert (info.currsize, info.misses) == (1, 1)  # the CA's context only, made once


def test_a_bulk_record_parses_as_a_proof_or_is_refused() -> None:
    proof = Proof.new(Kind.FIT, Subject(platform="p1", image="tts-deps", image_digest="d",
                                        wheel="w.whl", wheel_sha256="s"),
                      inputs="d|s", passed=False, evidence={"reason": "adds torch"})
    back = store_devpi.parse("http://d/w.whl.toxresult-0", json.dumps(proof.to_dict()))
    assert back.passed is False and back.source == "http://d/w.whl.toxresult-0"
    for text in ("[1, 2]", "{not json", '{"kind": "something else"}'):
        with pytest.raises(ValueError):
            store_devpi.parse("http://d/x", text)


class FakeDevpi:
    """An index's custom_data, as DevpiClient keeps it."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def custom_data(self, index: str) -> dict[str, Any]:
        return dict(self.data.get(index, {}))

    def set_custom_data(self, index: str, data: dict[str, Any]) -> None:
        self.data[index] = dict(data)


def test_a_fingerprint_lives_in_its_platform_index_beside_other_data(tmp_path: Path) -> None:
    f = small_factory(tmp_path, '[index]\nuser = "acme"\n')
    devpi = FakeDevpi()
    devpi.data["acme/p1"] = {"other": 1}
    assert store.load(f, devpi, "p1") is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="platform `p1` has not been probed") as caught:
        store.require(f, devpi, "p1")  # type: ignore[arg-type]
    assert "basefactory platforms build p1" in caught.value.hint
    fp = Fingerprint(platform="p1", base_image="b", base_digest="sha256:x", python="3.11.7",
                     python_tag="cp311", torch="2.13.0+cpu", cuda=None, cxx11_abi=True,
                     glibc="2.36", arch="x86_64", distributions={"torch": "2.13.0+cpu"},
                     probed_at="2026-12-01T00:00:00Z")
    store.save(f, devpi, fp)  # type: ignore[arg-type]
    assert devpi.data["acme/p1"]["other"] == 1  # what else the index holds stays
    assert store.require(f, devpi, "p1") == fp  # type: ignore[arg-type]


def test_a_step_of_an_unknown_platform_or_before_its_platform_is_refused(tmp_path: Path) -> None:
    f = small_factory(tmp_path, '[index]\nuser = "acme"\n')
    session = SimpleNamespace(factory=f, devpi=FakeDevpi())
    with pytest.raises(ConfigError, match="no platform `p9`") as unknown:
        run_step(session, "wheel:torchsort:p9")  # type: ignore[arg-type]
    assert "platforms: p1" in unknown.value.hint
    with pytest.raises(ConfigError, match="cannot run yet: its platform is not probed") as early:
        run_step(session, "wheel:torchsort:p1")  # type: ignore[arg-type]
    assert early.value.hint == "run platform:p1 first"
