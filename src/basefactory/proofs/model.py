"""The proof model: one shape for every kind, versioned so that an old record still reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# 1: the records written before this model (a wheel test record with "kind":
#    "basefactory-wheel-test", an image's `org.basefactory.smoke` summary); read, never written.
# 2: this model.
SCHEMA = 2


class Kind(StrEnum):
    WHEEL_TEST = "wheel-test"  # the recipe's test in a fresh container of the platform's base
    SMOKE = "smoke"  # an image's promised imports, pip check, torch, size budget
    ABI_AUDIT = "abi-audit"  # every extension module loads against the image's libraries
    FIT = "fit"  # one wheel installed into one image exactly as users would


@dataclass(frozen=True)
class Subject:
    """What a proof is about. A wheel by its file (name and sha256); an image by name and
    platform, and by digest where one exists when the proof is made: the registry's
    manifest digest for a pushed image, the image's input digest for proofs that travel
    in its own labels (an image cannot carry its own manifest digest)."""

    platform: str | None = None
    wheel: str | None = None
    wheel_sha256: str | None = None
    image: str | None = None
    image_digest: str | None = None

    def of_file(self, sha256: str) -> bool:
        """Whether this is about the file of `sha256`: a subject naming no file (an older
        writer's) is taken as the file's it is attached to."""
        return not self.wheel_sha256 or self.wheel_sha256 == sha256

    def key(self) -> str:
        return "|".join(x or "" for x in (self.platform, self.image, self.image_digest,
                                          self.wheel, self.wheel_sha256))


@dataclass(frozen=True)
class Proof:
    kind: Kind
    subject: Subject
    inputs: str  # digest of what was tested (wheel file, image inputs); "" when unknown
    passed: bool
    evidence: dict[str, Any] = field(default_factory=dict)  # what ran, output, what it added
    at: str = ""  # ISO 8601, UTC
    schema: int = SCHEMA
    source: str = ""  # where it was read from (a URL), set by the reader; not stored

    @classmethod
    def new(cls, kind: Kind, subject: Subject, *, inputs: str, passed: bool,
            evidence: dict[str, Any]) -> Proof:
        return cls(kind, subject, inputs, passed, evidence,
                   datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        data["kind"] = str(self.kind)
        return data

    def with_evidence(self, **extra: Any) -> Proof:
        return Proof(self.kind, self.subject, self.inputs, self.passed,
                     {**self.evidence, **extra}, self.at, self.schema, self.source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "") -> Proof:
        """Any schema this model has had; ValueError for what is not a proof."""
        if not isinstance(data, dict):
            raise ValueError("a proof is a JSON object")
        if data.get("kind") == "basefactory-wheel-test":  # schema 1: a wheel test record
            evidence = {k: v for k, v in data.items()
                        if k not in ("kind", "platform", "wheel", "sha256", "passed", "tested_at")}
            return cls(Kind.WHEEL_TEST,
                       Subject(platform=data.get("platform"), wheel=data.get("wheel"),
                               wheel_sha256=data.get("sha256")),
                       data.get("sha256") or "", bool(data.get("passed")), evidence,
                       data.get("tested_at", ""), 1, source)
        schema = data.get("schema")
        if not isinstance(schema, int):
            raise ValueError(f"not a proof: no schema number ({schema!r})")
        # schema 1 in this shape: a legacy record as the reader converted it (a saved snapshot)
        if schema not in range(1, SCHEMA + 1) or (schema != SCHEMA and "subject" not in data):
            raise ValueError(f"unknown proof schema {schema!r} (this basefactory reads 1-{SCHEMA})")
        try:
            return cls(Kind(data["kind"]), Subject(**data["subject"]), str(data["inputs"]),
                       bool(data["passed"]), dict(data.get("evidence") or {}),
                       str(data.get("at", "")), schema, data.get("source") or source)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a proof: {exc}") from None


def legacy_smoke(summary: dict[str, Any], *, image: str, platform: str, inputs: str) -> Proof:
    """Schema 1 of the smoke proof: the `org.basefactory.smoke` label's summary."""
    evidence = {k: v for k, v in summary.items() if k != "passed"}
    return Proof(Kind.SMOKE, Subject(platform=platform, image=image, image_digest=inputs),
                 inputs, bool(summary.get("passed")), evidence, "", 1)
