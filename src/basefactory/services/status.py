from __future__ import annotations

from dataclasses import asdict, dataclass


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
