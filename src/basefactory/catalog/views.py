"""Pure functions from a snapshot to what the pages and the API show."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from packaging.utils import canonicalize_name

from basefactory.catalog.snapshot import ImageCell, Snapshot, Wheel, image_url
from basefactory.proofs import Kind, Proof
from basefactory.proofs.read import first


class NotFound(Exception):
    """An unknown image, platform or wheel: 404."""


class BadRequest(Exception):
    """A request the API cannot answer as asked: 422."""


def platforms(s: Snapshot) -> list[dict[str, Any]]:
    rows = []
    for name, fp in s.platforms.items():
        rows.append({
            "name": name,
            "probed": bool(fp),
            "python": fp.get("python"), "python_tag": fp.get("python_tag"),
            "torch": fp.get("torch"), "cuda": fp.get("cuda"), "cxx11_abi": fp.get("cxx11_abi"),
            "glibc": fp.get("glibc"), "arch": fp.get("arch"),
            "base_image": fp.get("base_image"), "base_digest": fp.get("base_digest"),
            "distributions": len(fp.get("distributions") or {}),
            "index_url": f"{s.index}/factory/{name}/+simple/",
            "wheels": sum(1 for w in s.wheels if w.platform == name),
            "images": sorted(i for i, cells in s.images.items() if name in cells),
        })
    return rows


def platform(s: Snapshot, name: str) -> dict[str, Any]:
    if name not in s.platforms:
        raise NotFound(f"no platform `{name}`; platforms: {', '.join(s.platforms) or 'none'}")
    row = next(p for p in platforms(s) if p["name"] == name)
    fp = s.platforms[name]
    return {**row, "fingerprint": fp,
            "wheels": [wheel_row(s, w) for w in s.wheels if w.platform in (name, None)],
            "pip": f"pip install --index-url {row['index_url']} PACKAGE"}


def proof_row(p: Proof) -> dict[str, Any]:
    return {"kind": str(p.kind), "passed": p.passed, "at": p.at, "inputs": p.inputs,
            "schema": p.schema, "evidence": p.evidence, "url": p.source}


def proofs_by_kind(proofs: list[Proof]) -> dict[str, dict[str, Any]]:
    """The newest proof of each kind; a kind with no proof is absent ("not tested")."""
    return {str(k): proof_row(p) for k in Kind if (p := first(proofs, k)) is not None}


def cell_row(c: ImageCell) -> dict[str, Any]:
    return {"image": c.image, "platform": c.platform, "ref": c.ref, "tag": c.current,
            "pinned_ref": f"{c.ref.rsplit(':', 1)[0]}:{c.current}" if c.current else c.ref,
            "date": c.date, "size": c.size, "digest": c.digest, "parent": c.parent,
            "wheels": c.wheels, "proofs": proofs_by_kind(c.proofs), "builds": len(c.tags)}


def images(s: Snapshot) -> list[dict[str, Any]]:
    return [{"name": name,
             "description": next(iter(cells.values())).description if cells else "",
             "platforms": {p: cell_row(c) for p, c in cells.items()}}
            for name, cells in s.images.items()]


def image(s: Snapshot, name: str) -> dict[str, Any]:
    cells = s.images.get(name)
    if cells is None:
        raise NotFound(f"no image `{name}`; images: {', '.join(s.images) or 'none'}")
    out: dict[str, Any] = {"name": name, "platforms": {}}
    for p, c in cells.items():
        row = cell_row(c)
        out["platforms"][p] = {
            **row,
            "chain": parent_chain(s, name, p),
            "fingerprint": {k: v for k, v in s.platforms.get(p, {}).items()
                            if k not in ("distributions", "slim_distributions")},
            "installed": c.manifest,
            "tags": [asdict(t) for t in c.tags],
            "from": f"FROM {c.ref}",
            "from_pinned": f"FROM {c.ref.rsplit(':', 1)[0]}:{c.current}" if c.current else None,
            "proven_by": {"kind": "smoke test", "result": row["proofs"].get(str(Kind.SMOKE)),
                          "url": image_url(name, p)},
        }
    out["description"] = next(iter(cells.values())).description if cells else ""
    return out


def image_on(s: Snapshot, name: str, platform_name: str) -> dict[str, Any]:
    data = image(s, name)
    if platform_name not in data["platforms"]:
        raise NotFound(f"image `{name}` is not published for platform `{platform_name}`")
    return data["platforms"][platform_name]  # type: ignore[no-any-return]


def parent_chain(s: Snapshot, name: str, platform_name: str) -> list[str]:
    chain = [name]
    while True:
        cell = s.images.get(chain[-1], {}).get(platform_name)
        if cell is None or cell.parent in ("", "platform", "slim") or cell.parent in chain:
            if cell is not None and cell.parent in ("platform", "slim"):
                chain.append(f"{cell.parent}:{platform_name}")
            return chain
        chain.append(cell.parent)


def wheel_row(s: Snapshot, w: Wheel) -> dict[str, Any]:
    index_url = f"{s.index}/{w.index}/+simple/"
    # the newest test decides both whether it is tested and which record proves it
    test = first(w.proofs, Kind.WHEEL_TEST)
    tested = test is not None and test.passed
    return {"project": w.project, "version": w.version, "file": w.filename, "index": w.index,
            "platform": w.platform or "any (pure Python)", "sha256": w.sha256, "url": w.url,
            "tested": tested,
            "proven_by": [test.source] if tested and test is not None else [],
            "proofs": proofs_by_kind(w.proofs),
            "pip": f"pip install --index-url {index_url} {w.project}=={w.version}"}


def wheels(s: Snapshot, platform_name: str | None = None,
           project: str | None = None) -> list[dict[str, Any]]:
    if platform_name is not None and platform_name not in s.platforms:
        raise NotFound(f"no platform `{platform_name}`")
    wanted = canonicalize_name(project) if project else None
    return [wheel_row(s, w) for w in s.wheels
            if (platform_name is None or w.platform in (platform_name, None))
            and (wanted is None or canonicalize_name(w.project) == wanted)]


def combos(s: Snapshot, image_name: str | None, wheel: str | None) -> dict[str, Any]:
    """Which wheels an image takes, which images a wheel fits, or whether one fits the
    other, as far as a test proved it. A pair is `fits: true` only where a test ran that
    wheel in that image: for a recipe wheel the image includes, its smoke test (which
    imported it) and ABI audit (which loaded its modules). Every other pair of a wheel and
    an image of its platform is `fits: null`, "not tested": being built against the same
    torch is not proof that installing it there works (it may need a torch the image
    lacks, or replace one of its packages)."""
    if not image_name and not wheel:
        raise BadRequest("give `image`, `wheel` or both, e.g. /api/combos?image=tts-deps")
    if image_name and image_name not in s.images:
        raise NotFound(f"no image `{image_name}`; images: {', '.join(s.images) or 'none'}")
    wanted = canonicalize_name(wheel) if wheel else None
    if wanted and not any(canonicalize_name(w.project) == wanted for w in s.wheels):
        raise NotFound(f"no wheel `{wheel}` is published")
    pairs = []
    for name, cells in s.images.items():
        if image_name and name != image_name:
            continue
        for p, cell in cells.items():
            included = {canonicalize_name(k): v for k, v in cell.wheels.items()}
            for w in s.wheels:
                if wanted and canonicalize_name(w.project) != wanted:
                    continue
                test = first(w.proofs, Kind.WHEEL_TEST)
                if w.platform not in (p, None) or test is None or not test.passed:
                    continue
                pairs.append({
                    "image": name, "platform": p, "ref": cell.ref,
                    "wheel": w.project, "version": w.version, "file": w.filename,
                    **_fit(cell, included.get(canonicalize_name(w.project)) == w.version, test),
                })
    result: dict[str, Any] = {"image": image_name, "wheel": wheel, "combos": pairs}
    if image_name and wheel:
        verdicts = [pair["fits"] for pair in pairs]
        result["fits"] = True if True in verdicts else False if False in verdicts else None
    return result


def _fit(cell: ImageCell, included: bool, test: Proof) -> dict[str, Any]:
    smoke, audit = first(cell.proofs, Kind.SMOKE), first(cell.proofs, Kind.ABI_AUDIT)
    if included and smoke is not None and smoke.passed:
        here = image_url(cell.image, cell.platform)
        proven_by = {"wheel_test": test.source, "image_smoke": here}
        if audit is not None and audit.passed:
            proven_by["image_abi_audit"] = here
        return {"included": True, "fits": True, "reason": "included in the image: its smoke"
                " test imported it", "proven_by": proven_by}
    return {"included": included, "fits": None,
            "reason": "not tested: no test has installed this wheel in this image",
            "proven_by": None}


def overview(s: Snapshot) -> dict[str, Any]:
    return {"platforms": s.platform_names,
            "rows": [{"image": i["name"], "description": i["description"],
                      "cells": [i["platforms"].get(p) for p in s.platform_names]}
                     for i in images(s)],
            "wheels": len(s.wheels)}
