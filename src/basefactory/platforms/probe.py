"""Run the probe inside a platform's base and turn what it prints into a Fingerprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from basefactory.adapters.docker import Docker
from basefactory.platforms.fingerprint import (
    DISTRIBUTIONS_SCRIPT,
    PROBE_SCRIPT,
    PROBE_VERSION,
    Fingerprint,
)
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
        probe_version=PROBE_VERSION,
        **found,
    )
