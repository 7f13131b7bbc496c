from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | stopped | external
    address: str
    managed: bool  # started by `basefactory up` (and stopped by `down`)
    pid: int | None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Pinged(Protocol):
    def ping(self) -> bool: ...
    def close(self) -> None: ...


class _Process(Protocol):
    def pid(self) -> int | None: ...


def service_status(name: str, *, embedded: bool, address: str, process: _Process,
                   client: _Pinged, detail: str) -> ServiceStatus:
    """An embedded or external service's state, from its pid file and one ping (the
    client is closed here)."""
    pid = process.pid() if embedded else None
    try:
        up = client.ping()
    finally:
        client.close()
    state = ("running" if embedded else "external") if up else "stopped"
    return ServiceStatus(name, state, address, pid is not None, pid, detail)
