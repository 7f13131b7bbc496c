"""`basefactory images diff IMAGE TAG_A TAG_B`: what changed between two builds of an
image, read from the registry: the package manifests their smoke tests recorded in
their labels (name, version, installed size), their compressed sizes, and their ABI
audits' verdicts."""

from __future__ import annotations

import json
import re
from typing import Any

from basefactory.adapters.registry_api import Registry
from basefactory.config.factory import Factory
from basefactory.plumbing.errors import ConfigError
from basefactory.proofs import Kind, store_labels
from basefactory.proofs.read import first
from basefactory.refs import FactoryRef, Labels, factory_ref


def packages(labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """name -> {"version", "size"} from an image's manifest label."""
    try:
        rows = json.loads(labels.get(Labels.MANIFEST) or "[]")
    except ValueError:
        rows = []
    return {str(r["name"]).lower(): {"version": str(r["version"]), "size": int(r.get("size", 0))}
            for r in rows if isinstance(r, dict) and "name" in r}


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Packages added, removed and changed (version or installed size) from a to b."""
    added = [{"name": n, **b[n]} for n in sorted(b.keys() - a.keys())]
    removed = [{"name": n, **a[n]} for n in sorted(a.keys() - b.keys())]
    changed = [{"name": n, "from": a[n]["version"], "to": b[n]["version"],
                "size_delta": b[n]["size"] - a[n]["size"]}
               for n in sorted(a.keys() & b.keys())
               if a[n]["version"] != b[n]["version"] or a[n]["size"] != b[n]["size"]]
    return {"added": added, "removed": removed, "changed": changed}


def summary(changes: dict[str, Any]) -> list[str]:
    """One line per package change, or one saying there is none."""
    lines = [f"+ {r['name']} {r['version']}" for r in changes["added"]]
    lines += [f"- {r['name']} {r['version']}" for r in changes["removed"]]
    lines += [f"~ {r['name']} {r['from']} -> {r['to']}" for r in changes["changed"]
              if r["from"] != r["to"]]
    return lines or ["no package changes"]


def side_reference(factory: Factory, text: str, *, image: str | None = None,
                   what: str = "TAG") -> FactoryRef:
    """An argument of `images diff`: the image (any form), or one side, which is a tag, a
    digest or a full reference of that same image."""
    if image is not None and (re.fullmatch(r"sha256:[0-9a-f]{64}", text)
                              or not re.search(r"[/:@]", text)):
        return FactoryRef(image, text)  # a plain tag or digest
    ref = factory_ref(factory, text)
    if ref is None or (image is not None and (ref.name != image or ref.reference is None)):
        raise ConfigError(f"{what} `{text}` is not {'a tag of ' + image if image else 'an image'}"
                          " of this factory's registry",
                          hint="write a tag, a sha256: digest, or the full reference"
                               " `images ls` prints")
    return ref


def diff(registry: Registry, repository: str, image: str, platform: str, tag_a: str, tag_b: str
         ) -> dict[str, Any]:
    sides: list[dict[str, Any]] = []
    for tag in (tag_a, tag_b):
        manifest = registry.manifest(repository, tag)
        if manifest is None:
            raise ConfigError(f"no tag {tag} of {repository} in the registry",
                              hint="`basefactory images ls` lists the published tags")
        labels = registry.labels(repository, tag)
        audit = first(store_labels.read(labels, image=image, platform=platform), Kind.ABI_AUDIT)
        sides.append({"tag": tag, "digest": manifest.digest, "compressed_size": manifest.size,
                      "abi_audit": ("passed" if audit.passed else "failed") if audit else
                      "not tested", "packages": packages(labels)})
    a, b = sides
    return {"image": image, "platform": platform,
            **{side: {k: v for k, v in s.items() if k != "packages"}
               for side, s in (("a", a), ("b", b))},
            "compressed_size_delta": b["compressed_size"] - a["compressed_size"],
            **compare(a["packages"], b["packages"])}
