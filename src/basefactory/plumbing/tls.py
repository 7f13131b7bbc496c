"""How a service over https is trusted, as factory.toml gives it (the http adapter turns
it into an SSL context only when an https URL is used: a plain loopback factory never
pays for one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tls:
    """A CA bundle (else the system store) and an optional client certificate.
    `setting` names where they are configured, for error messages."""

    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    setting: str = "factory.toml"
