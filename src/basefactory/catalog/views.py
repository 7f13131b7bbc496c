"""Pure functions from a snapshot to what the pages and the API show."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from packaging.utils import canonicalize_name

from basefactory.adapters.devpi_api import simple_url
from basefactory.catalog.snapshot import ImageCell, Snapshot, Wheel, image_url
from basefactory.proofs import Kind, Proof
from basefactory.proofs.read import first
from basefactory.wheels.relabel import pip_order


class NotFound(Exception):
    """An unknown image, platform or wheel: 404."""


class BadRequest(Exception):
    """A request the API cannot answer as asked: 422."""


def platforms(s: Snapshot) -> list[dict[str, Any]]:
    rows = []
    for name, fp in s.platforms.items():
        index_url = s.index_url(name)
        system = fp.get("in_venv") is False
        rows.append({
            "name": name,
            # a platform is published once its base was probed and pushed: before that its
            # index holds nothing of its own, and the catalog offers no install line for it
            "probed": bool(fp), "published": bool(fp),
            "python_kind": ("system Python" if system else "venv") if fp else None,
            "site_packages": fp.get("site_packages"),
            "unindexed": fp.get("unindexed") or {},
            "python": fp.get("python"), "python_tag": fp.get("python_tag"),
            "torch": fp.get("torch"), "cuda": fp.get("cuda"), "cxx11_abi": fp.get("cxx11_abi"),
            "glibc": fp.get("glibc"), "arch": fp.get("arch"),
            "base_image": fp.get("base_image"), "base_digest": fp.get("base_digest"),
            "base_source": fp.get("base_source"),
            "distributions": len(fp.get("distributions") or {}),
            "index_url": index_url if fp else None,
            "pip": f"pip install --index-url {index_url} PACKAGE" if fp else None,
            # into a system Python uv installs only with --system (seed 001: without it, uv
            # made a venv and reinstalled torch there); the factory's images set UV_CONSTRAINT
            # to the base's PIP_CONSTRAINT, which uv does not read
            "uv_pip": (f"uv pip install --system --index-url {index_url} PACKAGE" if system
                       else f"uv pip install --index-url {index_url} PACKAGE") if fp else None,
            "wheels": sum(1 for w in s.wheels if w.platform == name),
            "images": sorted(i for i, cells in s.images.items() if name in cells),
        })
    return rows


def platform(s: Snapshot, name: str) -> dict[str, Any]:
    if name not in s.platforms:
        raise NotFound(f"no platform `{name}`; platforms: {', '.join(s.platforms) or 'none'}")
    row = next(p for p in platforms(s) if p["name"] == name)
    fp = s.platforms[name]
    projects = sorted({w.project for w in s.wheels if w.platform in (name, None)},
                      key=str.lower)
    # a project's pyproject.toml takes torch from the platform's index: right for a venv
    # platform, whose index serves its torch; a system-Python base (NGC) has a torch no
    # index serves, and what installs into it is `uv pip install --system` (uv_pip)
    uv = (uv_config(name, row["index_url"], projects)
          if row["published"] and row["python_kind"] == "venv" else None)
    return {**row, "fingerprint": fp,
            "wheels": [wheel_row(s, w) for w in s.wheels if w.platform in (name, None)],
            "uv": uv, "matrix": matrix(s, name)}


def uv_config(platform_name: str, index_url: str, projects: list[str]) -> str:
    """pyproject.toml lines for uv: the platform's index is `explicit` (used only for the
    packages named in [tool.uv.sources]), and torch and the factory's wheels are named, so
    that uv never resolves a public torch or a wheel built for another torch."""
    index = f"factory-{platform_name}"
    names = ["torch", *(p for p in projects if canonicalize_name(p) != "torch")]
    sources = "".join(f'{canonicalize_name(p)} = {{ index = "{index}" }}\n' for p in names)
    return (f'[[tool.uv.index]]\nname = "{index}"\nurl = "{index_url}"\nexplicit = true\n\n'
            f"[tool.uv.sources]\n{sources}")


def proof_row(p: Proof) -> dict[str, Any]:
    return {"kind": str(p.kind), "passed": p.passed, "at": p.at, "inputs": p.inputs,
            "schema": p.schema, "evidence": p.evidence, "url": p.source}


def proofs_by_kind(proofs: list[Proof]) -> dict[str, dict[str, Any]]:
    """The newest proof of each kind; a kind with no proof is absent ("not tested")."""
    return {str(k): proof_row(p) for k in Kind if (p := first(proofs, k)) is not None}


def cell_row(c: ImageCell) -> dict[str, Any]:
    repo = c.ref.rsplit(":", 1)[0]
    return {"image": c.image, "platform": c.platform, "ref": c.ref, "tag": c.current,
            "pinned_ref": f"{repo}:{c.current}" if c.current else c.ref,
            "digest_ref": f"{repo}@{c.digest}",
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
            # the one line that can never change under a build: the manifest's digest
            "from_digest": f"FROM {row['digest_ref']}",
            # the same image with zstd layers, for containerd and Docker 23+
            "from_zstd": f"FROM {c.zstd_ref}" if c.zstd_ref else None,
            "proven_by": {"kind": "smoke test", "result": row["proofs"].get(str(Kind.SMOKE)),
                          "url": image_url(name, p)},
            "sbom": f"{image_url(name, p)}/sbom" if c.sbom else None,
            # the current build against the newest-dated other one (tags carry the day,
            # not the hour: the form on the page picks any two)
            "compare": compare_url(name, others[0], c.current)
            if (others := [t.name for t in c.tags if t.name != c.current]) and c.current
            else None,
        }
    out["description"] = next(iter(cells.values())).description if cells else ""
    return out


def compare_url(name: str, a: str, b: str) -> str:
    return f"/images/{name}/compare?a={a}&b={b}"


def tag_platform(s: Snapshot, name: str, a: str, b: str) -> str:
    """The platform both tags are builds of; NotFound/BadRequest otherwise (the catalog
    only asks the registry about tags its snapshot lists)."""
    cells = s.images.get(name)
    if cells is None:
        raise NotFound(f"no image `{name}`; images: {', '.join(s.images) or 'none'}")
    where = {t.name: p for p, c in cells.items() for t in c.tags}
    for tag in (a, b):
        if tag not in where:
            raise NotFound(f"image `{name}` has no build tagged `{tag}`")
    if where[a] != where[b]:
        raise BadRequest(f"`{a}` and `{b}` are builds for different platforms"
                         f" ({where[a]}, {where[b]}): compare builds of one platform")
    return where[a]


def sbom_of(s: Snapshot, name: str, platform_name: str) -> ImageCell:
    """The cell whose SBOM is asked for; NotFound when it has none."""
    image_on(s, name, platform_name)
    cell = s.images[name][platform_name]
    if cell.sbom is None:
        raise NotFound(f"image `{name}` on `{platform_name}` has no SBOM stored beside it"
                       " (built before basefactory wrote SBOMs: rebuild it)")
    return cell


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
    index_url = simple_url(s.index, w.index)
    # the newest test decides both whether it is tested and which record proves it
    test = first(w.proofs, Kind.WHEEL_TEST)
    tested = test is not None and test.passed
    # an adopted (prebuilt) wheel: the file it was taken from, every declared override of
    # its requirements and every patch to its files, as its test record carries them
    adopted = test.evidence.get("adopted") if test is not None else None
    return {"project": w.project, "version": w.version, "file": w.filename, "index": w.index,
            "platform": w.platform or "any (pure Python)", "sha256": w.sha256, "url": w.url,
            "tested": tested,
            "proven_by": [test.source] if tested and test is not None else [],
            "proofs": proofs_by_kind([p for p in w.proofs if p.kind != Kind.FIT]),
            "fits": [fit_row(p) for p in w.proofs if p.kind == Kind.FIT],
            "adopted": adopted, "overrides": (adopted or {}).get("overrides", []),
            "patches": (adopted or {}).get("patches", []),
            "pip": pip_line(index_url, w.project, w.version)}


def pip_line(index_url: str, project: str, version: str) -> str:
    return f"pip install --index-url {index_url} {project}=={version}"


def fit_row(p: Proof) -> dict[str, Any]:
    return {"image": p.subject.image, "platform": p.subject.platform,
            "image_digest": p.subject.image_digest, "fits": p.passed,
            "reason": p.evidence.get("reason", ""), "added_mb": p.evidence.get("added_mb"),
            "at": p.at, "url": p.source}


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
    other, as far as a test proved it. A pair is `fits: true|false` only where a test ran
    that wheel in that image build (by digest): its fit test (installed as users would),
    or for a recipe wheel the image includes, its smoke test (which imported it) and ABI
    audit (which loaded its modules). Every other pair is `fits: null`, "not tested":
    being built against the same torch is not proof that installing it there works."""
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
            for w in s.wheels:
                if wanted and canonicalize_name(w.project) != wanted:
                    continue
                test = first(w.proofs, Kind.WHEEL_TEST)
                if w.platform not in (p, None) or test is None or not test.passed:
                    continue
                verdict = fit(cell, w, test, s.expected_fit(cell.digest, w.sha256))
                index_url = s.index_url(p)
                pairs.append({
                    "image": name, "platform": p, "ref": cell.ref,
                    "wheel": w.project, "version": w.version, "file": w.filename,
                    **verdict,
                    # copy-paste only where the pair is proven to fit
                    "pip": pip_line(index_url, w.project, w.version) if verdict["fits"] else None,
                    "uv": uv_config(p, index_url, [w.project]) if verdict["fits"] else None,
                })
    result: dict[str, Any] = {"image": image_name, "wheel": wheel, "combos": pairs}
    if image_name and wheel:
        verdicts = [pair["fits"] for pair in pairs]
        result["fits"] = True if True in verdicts else False if False in verdicts else None
    return result


def fit(cell: ImageCell, w: Wheel, test: Proof, expected: str | None) -> dict[str, Any]:
    """The verdict on one wheel file in one image build, and the record it stands on.
    `expected`: the inputs its fit record must have today (Snapshot.expected_fit); a record
    of other inputs (older rules, another test or allowance) proves nothing now."""
    # included means this very file (by sha256) was built into the image: a rebuild of the
    # same version with a new build tag is another file, which nothing here tested
    included = bool(w.sha256) and {canonicalize_name(k): v for k, v in cell.wheel_files.items()
                                   }.get(canonicalize_name(w.project)) == w.sha256
    smoke, audit = first(cell.proofs, Kind.SMOKE), first(cell.proofs, Kind.ABI_AUDIT)
    if included and smoke is not None and smoke.passed and audit is not None and audit.passed:
        here = image_url(cell.image, cell.platform)
        return {"included": True, "fits": True, "reason": "included in the image: its smoke"
                " test imported it and its ABI audit loaded every module",
                "adds": None, "proven_by": {"wheel_test": test.source, "image_smoke": here,
                                            "image_abi_audit": here}}
    records = [p for p in w.proofs if p.kind == Kind.FIT
               and p.subject.image == cell.image and p.subject.platform == cell.platform
               and p.subject.image_digest == cell.digest
               and p.subject.of_file(w.sha256)]
    record = first([p for p in records if expected is not None and p.inputs == expected],
                   Kind.FIT)
    if record is None and records:
        return {"included": included, "fits": None,
                "reason": "not tested as things are now: its fit record was made under other"
                          " rules or before its recipe's test or an allowance changed (the next"
                          " publish tests it again)", "adds": None, "proven_by": None}
    if record is not None:
        return {"included": included, "fits": record.passed,
                "reason": record.evidence.get("reason", ""),
                "adds": {"packages": record.evidence.get("added") or [],
                         "mb": record.evidence.get("added_mb")},
                "proven_by": {"fit": record.source, "wheel_test": test.source}}
    return {"included": included, "fits": None,
            "reason": "not tested: no test has installed this wheel in this image build",
            "adds": None, "proven_by": None}


def matrix(s: Snapshot, platform_name: str) -> dict[str, Any]:
    """Images x wheels of one platform: the newest tested file of each project (what
    `pip install NAME` gets), each cell true / false / null as `combos` says."""
    newest: dict[str, tuple[Wheel, Proof]] = {}
    for w in s.wheels:
        test = first(w.proofs, Kind.WHEEL_TEST)
        if w.platform not in (platform_name, None) or test is None or not test.passed:
            continue
        key = canonicalize_name(w.project)
        if key not in newest or pip_order(w.filename) > pip_order(newest[key][0].filename):
            newest[key] = (w, test)
    columns = sorted(newest.values(), key=lambda x: x[0].project.lower())
    rows = []
    for name, cells in s.images.items():
        cell = cells.get(platform_name)
        if cell is None:
            continue
        rows.append({"image": name, "cells": [
            {"wheel": w.project, "version": w.version,
             **fit(cell, w, test, s.expected_fit(cell.digest, w.sha256))}
            for w, test in columns]})
    return {"platform": platform_name,
            "wheels": [{"project": w.project, "version": w.version} for w, _ in columns],
            "rows": rows}


def overview(s: Snapshot) -> dict[str, Any]:
    return {"platforms": s.platform_names,
            # declared in factory.toml, nothing published: listed apart, with no pip line
            "unpublished": [p for p in s.platform_names if not s.platforms[p]],
            "rows": [{"image": i["name"], "description": i["description"],
                      "cells": [i["platforms"].get(p) for p in s.platform_names]}
                     for i in images(s)],
            "wheels": len(s.wheels),
            "matrices": [m for p in s.platform_names if (m := matrix(s, p))["rows"]]}
