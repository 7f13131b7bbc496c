"""What every benchmark shares: the factory, timing, the docker client, a results table."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from basefactory.config.factory import load_factory
from basefactory.session import Session

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
PLATFORM = "cpu-py311-torch2.13"


@dataclass
class Figure:
    name: str
    ours: float
    naive: float | None
    unit: str
    target: str
    met: bool
    note: str = ""

    @property
    def ratio(self) -> str:
        if self.naive is None or self.ours == 0:
            return "—"
        return f"{self.naive / self.ours:.1f}x"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        ratio = f" ({figure.ratio} vs naive {figure.naive:.2f} {figure.unit})" if figure.naive \
            is not None else ""
        print(f"  {figure.name}: {figure.ours:.2f} {figure.unit}{ratio}; target"
              f" {figure.target}: {'met' if figure.met else 'NOT met'}", flush=True)


def session() -> Session:
    return Session(load_factory(ROOT / "factory.toml"))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def machine() -> str:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024 // 1024
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {mem} GiB memory, {platform.machine()},"
            f" {platform.platform(terse=True)}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
