"""Run the probe inside a platform's base and turn what it prints into a Fingerprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from packaging.version import InvalidVersion, Version

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.docker import Docker
from basefactory.platforms.fingerprint import DISTRIBUTIONS_SCRIPT, PROBE_SCRIPT, Fingerprint
from basefactory.plumbing.errors import BuildError


def probe(docker: Docker, platform: str, ref: str, slim: str | None = None) -> Fingerprint:
    result = docker.run(ref, ["python", "-c", PROBE_SCRIPT], check=False, echo=False)
    if result.returncode != 0:
        raise BuildError(
            f"the probe of {ref} failed (exit {result.returncode}):\n{result.tail}",
            hint="a platform's base needs `python` on PATH with torch importable",
        )
    try:
        found = json.loads(result.output.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise BuildError(f"the probe of {ref} printed no JSON:\n{result.tail}") from None
    slim_dists: dict[str, str] = {}
    if slim is not None:
        listed = docker.run(slim, ["python", "-c", DISTRIBUTIONS_SCRIPT], echo=False)
        slim_dists = json.loads(listed.output.strip().splitlines()[-1])
    return Fingerprint(
        platform=platform,
        base_image=ref,
        base_digest=docker.image_id(ref) or "",
        probed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        slim_image=slim,
        slim_distributions=slim_dists,
        **found,
    )


def unindexed(devpi: DevpiClient, index: str, distributions: dict[str, str]) -> dict[str, str]:
    """The base's distributions that `index` does not serve at the installed version.

    Only pre-releases, dev releases and local versions are looked up (one request each):
    they are what vendors build themselves (NVIDIA's torch 2.13.0a0+cf30153c4c.nv25.10,
    which no index has); a final release is served by the mirror. A bootstrapped base's
    torch (2.13.0+cpu) was imported into its index and is served."""
    found = {}
    for name, version in sorted(distributions.items()):
        try:
            parsed = Version(version)
        except InvalidVersion:
            found[name] = version
            continue
        if not (parsed.is_prerelease or parsed.is_devrelease or parsed.local):
            continue
        if str(parsed) not in devpi.simple_versions(index, name):
            found[name] = version
    return found
