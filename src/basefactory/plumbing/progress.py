"""Live progress for `publish`: one line per step with its state, elapsed time and the
last line of its log (a rich Live table on a terminal; plain timed steps elsewhere).

Steps run in worker threads; the step a thread works for is a context variable, and
cmd.run reports every output line to `note`, so the last line shown is the real one.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass, field

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from basefactory.plumbing import log

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("step", default=None)


@dataclass
class StepView:
    label: str
    state: str = "waiting"  # waiting | running | built | current | failed | ...
    started: float | None = None
    ended: float | None = None
    last: str = ""

    def elapsed(self) -> str:
        if self.started is None:
            return ""
        return f"{(self.ended or time.monotonic()) - self.started:.1f}s"


@dataclass
class Progress:
    live: bool
    steps: dict[str, StepView] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: Live | None = None
    _hook_token: Token[Callable[[str], None] | None] | None = None
    _quiet_token: Token[bool] | None = None

    def add(self, key: str, label: str) -> None:
        with self._lock:
            self.steps[key] = StepView(label)

    @contextmanager
    def running(self, key: str) -> Iterator[None]:
        token = CURRENT.set(key)
        with self._lock:
            self.steps[key].state = "running"
            self.steps[key].started = time.monotonic()
        try:
            yield
        except BaseException:
            self.finish(key, "failed")
            raise
        finally:
            CURRENT.reset(token)

    def finish(self, key: str, state: str) -> None:
        with self._lock:
            step = self.steps[key]
            if step.ended is None:
                step.state, step.ended = state, time.monotonic()
        if not self.live:
            log.detail(f"{step.label}: {state} ({step.elapsed()})")

    def note(self, line: str) -> None:
        key = CURRENT.get()
        if key is not None and line.strip():
            self.steps[key].last = line.strip()[-120:]

    def table(self) -> Table:
        t = Table(show_header=True, header_style="bold", expand=False, box=None)
        for column in ("step", "state", "time", "last log line"):
            t.add_column(column)
        marks = {"running": "[yellow]⟳ running[/]", "failed": "[red]✕ failed[/]",
                 "waiting": "[dim]· waiting[/]"}
        with self._lock:
            for step in self.steps.values():
                state = marks.get(step.state, f"[green]✓ {step.state}[/]")
                t.add_row(escape(step.label), state, step.elapsed(), escape(step.last)[:100])
        return t

    def __enter__(self) -> Progress:
        self._hook_token = log.set_line_hook(self.note)
        if self.live:
            self._live = Live(self.table(), console=log.console(), refresh_per_second=4,
                              get_renderable=self.table, transient=False)
            self._live.__enter__()
            # the table shows the steps; logs go to files
            self._quiet_token = log.set_quiet(True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook_token is not None:
            log.reset_line_hook(self._hook_token)
        if self._live is not None:
            self._live.__exit__(None, None, None)
        if self._quiet_token is not None:
            log.reset_quiet(self._quiet_token)
