"""Proofs made before an image is pushed (its smoke test, its ABI audit) travel in the
image's own labels: they cannot be separated from the image, and the catalog reads them
with the config blob it reads anyway."""

from __future__ import annotations

import json

from basefactory.proofs.model import Kind, Proof, legacy_smoke
from basefactory.refs import Labels

PREFIX = Labels.PROOF_PREFIX
LEGACY_SMOKE = Labels.SMOKE_V1


def labels(proofs: list[Proof]) -> dict[str, str]:
    return {f"{PREFIX}{p.kind}": json.dumps(p.to_dict(), sort_keys=True, separators=(",", ":"))
            for p in proofs}


def read(found: dict[str, str], *, image: str, platform: str, source: str = "") -> list[Proof]:
    """Every proof in an image's labels; a label that does not parse is left out (the
    catalog then says "not tested" for that kind, which is the truth it can stand on)."""
    proofs: list[Proof] = []
    for key, text in found.items():
        if not key.startswith(PREFIX):
            continue
        try:
            proofs.append(Proof.from_dict(json.loads(text), source=source))
        except ValueError:
            continue
    if LEGACY_SMOKE in found and not any(p.kind == Kind.SMOKE for p in proofs):
        try:
            summary = json.loads(found[LEGACY_SMOKE])
        except ValueError:
            summary = None
        if isinstance(summary, dict):
            proofs.append(legacy_smoke(summary, image=image, platform=platform,
                                       inputs=found.get(Labels.INPUT_DIGEST, "")))
    return sorted(proofs, key=lambda p: str(p.kind))
