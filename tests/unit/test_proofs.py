"""The proof model: one shape for every kind, and old records still read."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.proofs import SCHEMA, Kind, Proof, Subject, store_labels
from basefactory.proofs.read import ProofReader, first, proven

P = "cpu-py311-torch2.13"


def test_a_proof_round_trips_through_its_stored_form() -> None:
    proof = Proof.new(Kind.FIT, Subject(platform=P, image="tts-deps", image_digest="sha256:ab",
                                        wheel="t.whl", wheel_sha256="cd"),
                      inputs="ab|cd", passed=False, evidence={"reason": "adds torch (187 MB)"})
    stored = json.loads(json.dumps(proof.to_dict()))
    assert stored["schema"] == SCHEMA and stored["kind"] == "fit" and "source" not in stored
    back = Proof.from_dict(stored, source="http://x/r")
    assert back == Proof(proof.kind, proof.subject, proof.inputs, proof.passed, proof.evidence,
                         proof.at, SCHEMA, "http://x/r")


def test_a_schema_1_wheel_test_record_still_reads() -> None:
    # exactly what wheels/test.py attached before the proof model
    old = {"kind": "basefactory-wheel-test", "recipe": "torchsort", "platform": P,
           "wheel": "torchsort-0.1.10+pt213cpu-1.abc-cp311-cp311-linux_x86_64.whl",
           "sha256": "ff" * 32, "command": "python -c 'import torchsort'", "passed": True,
           "torch_unchanged": True, "duration_s": 3.1, "tested_at": "2026-11-23T10:00:00+00:00"}
    proof = Proof.from_dict(old, source="u")
    assert proof.kind == Kind.WHEEL_TEST and proof.schema == 1 and proof.passed
    assert proof.subject == Subject(platform=P, wheel=old["wheel"], wheel_sha256="ff" * 32)
    assert proof.evidence["recipe"] == "torchsort" and proof.at == old["tested_at"]
    # and a saved snapshot of it (the model's shape, schema 1) reads back the same
    saved = {**proof.to_dict(), "source": "u"}
    assert Proof.from_dict(json.loads(json.dumps(saved))) == proof
    # a failed one reads as failed, and one that says nothing of passing is no pass
    assert Proof.from_dict({**old, "passed": False}).passed is False
    assert Proof.from_dict({k: v for k, v in old.items() if k != "passed"}).passed is False


@pytest.mark.parametrize("bad", [
    {"kind": "smoke", "schema": 99, "subject": {}, "inputs": "", "passed": True},
    {"kind": "smoke", "subject": {}, "inputs": "", "passed": True},  # no schema
    {"kind": "nonsense", "schema": SCHEMA, "subject": {}, "inputs": "", "passed": True},
    {"kind": "smoke", "schema": SCHEMA, "subject": {"colour": "red"}, "inputs": "", "passed": True},
    {"kind": "smoke", "schema": SCHEMA, "subject": {}},
    ["not", "an", "object"],
])
def test_what_is_not_a_proof_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        Proof.from_dict(bad)  # type: ignore[arg-type]


def test_image_labels_carry_proofs_and_the_legacy_smoke_label_still_reads() -> None:
    smoke = Proof.new(Kind.SMOKE, Subject(platform=P, image="api-lean", image_digest="d1"),
                      inputs="d1", passed=True, evidence={"imported": ["fastapi"]})
    audit = Proof.new(Kind.ABI_AUDIT, Subject(platform=P, image="api-lean", image_digest="d1"),
                      inputs="d1", passed=True, evidence={"modules": 12, "failures": []})
    labels = {**store_labels.labels([smoke, audit]), "org.example.other": "x",
              f"{store_labels.PREFIX}broken": "{not json"}
    read = store_labels.read(labels, image="api-lean", platform=P)
    assert [p.kind for p in read] == [Kind.ABI_AUDIT, Kind.SMOKE]  # the broken one left out
    assert proven(read, Kind.SMOKE) and proven(read, Kind.ABI_AUDIT)
    assert not proven(read, Kind.FIT) and first(read, Kind.FIT) is None  # "not tested"

    legacy = {"org.basefactory.smoke": json.dumps({"passed": True, "imported": ["fastapi"],
                                                   "torch": None, "size": 1, "pip_check": "ok"}),
              "org.basefactory.input-digest": "d0"}
    (old,) = store_labels.read(legacy, image="api-lean", platform=P)
    assert old.kind == Kind.SMOKE and old.passed and old.schema == 1 and old.inputs == "d0"
    failed = {"org.basefactory.smoke": json.dumps({"passed": False})}
    assert not proven(store_labels.read(failed, image="api-lean", platform=P), Kind.SMOKE)


def test_the_newest_proof_of_a_kind_decides() -> None:
    s = Subject(platform=P, wheel="w.whl")
    old = Proof(Kind.WHEEL_TEST, s, "x", False, {}, "2026-11-01T00:00:00")
    new = Proof(Kind.WHEEL_TEST, s, "x", True, {}, "2026-11-02T00:00:00")
    assert proven([old, new], Kind.WHEEL_TEST) and not proven([old], Kind.WHEEL_TEST)


def test_records_read_in_bulk_are_found_without_a_request() -> None:
    proof = Proof.new(Kind.WHEEL_TEST, Subject(wheel="x.whl", wheel_sha256="ab", platform="p1"),
                      inputs="ab", passed=True, evidence={})
    file = ReleaseFile("x", "1.0", "x.whl", "http://d/x.whl", "ab",
                       toxresults=("http://d/x.whl.toxresult-0", "http://d/x.whl.toxresult-1"))
    reader = ProofReader(None)  # type: ignore[arg-type]  # a request would fail on None
    reader.seed_records({"http://d/x.whl.toxresult-0": json.dumps(proof.to_dict()),
                         "http://d/x.whl.toxresult-1": '{"a tox run": "not a proof"}'})
    found = reader.wheel(file)
    assert [(p.kind, p.passed, p.source) for p in found] == [
        (Kind.WHEEL_TEST, True, "http://d/x.whl.toxresult-0")]


def test_a_proof_of_another_file_is_not_read_as_this_files() -> None:
    """A record whose subject is another file (its sha256), attached here by mistake,
    proves nothing about this file: the reader leaves it out."""
    mine = Proof.new(Kind.WHEEL_TEST, Subject(wheel="x.whl", wheel_sha256="ab", platform="p1"),
                     inputs="ab", passed=False, evidence={})
    theirs = Proof.new(Kind.WHEEL_TEST, Subject(wheel="x.whl", wheel_sha256="cd",
                                                platform="p1"),
                       inputs="cd", passed=True, evidence={})
    file = ReleaseFile("x", "1.0", "x.whl", "http://d/x.whl", "ab",
                       toxresults=("http://d/x.whl.toxresult-0", "http://d/x.whl.toxresult-1"))
    reader = ProofReader(None)  # type: ignore[arg-type]
    reader.seed_records({"http://d/x.whl.toxresult-0": json.dumps(mine.to_dict()),
                         "http://d/x.whl.toxresult-1": json.dumps(theirs.to_dict())})
    found = reader.wheel(file)
    assert [p.subject.wheel_sha256 for p in found] == ["ab"]
    assert not proven(found, Kind.WHEEL_TEST)  # the other file's pass does not count here


def test_records_not_read_in_bulk_are_fetched_once_each_and_kept() -> None:
    """A devpi without the plugin: each record is fetched from its URL once, a proof kept,
    a record that is no proof skipped (and not fetched again); a proof without a sha256
    (an older writer's) still belongs to the file it is attached to."""
    with_sha = Proof.new(Kind.WHEEL_TEST, Subject(wheel="x.whl", wheel_sha256="ab"),
                         inputs="ab", passed=True, evidence={})
    without = Proof.new(Kind.FIT, Subject(wheel="x.whl", image="i", image_digest="d"),
                        inputs="f", passed=True, evidence={})
    records = {"http://d/r0": with_sha.to_dict(), "http://d/r1": {"a tox run": 1},
               "http://d/r2": without.to_dict()}
    asked: list[str] = []

    def test_record(url: str) -> object:
        asked.append(url)
        return records[url]

    reader = ProofReader(SimpleNamespace(test_record=test_record))  # type: ignore[arg-type]
    file = ReleaseFile("x", "1.0", "x.whl", "http://d/x.whl", "ab",
                       toxresults=("http://d/r0", "http://d/r1", "http://d/r2"))
    for _ in range(2):
        found = reader.wheel(file)
        assert [(p.kind, p.source) for p in found] == [(Kind.WHEEL_TEST, "http://d/r0"),
                                                        (Kind.FIT, "http://d/r2")]
    assert asked == ["http://d/r0", "http://d/r1", "http://d/r2"]
