"""One shared logger: timed, named steps on stdout; warnings and errors on stderr.

Colour only on a TTY (rich decides). Machine-readable output (`--json`) is printed by the
CLI on stdout, so in JSON mode steps go to stderr to keep stdout parseable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from rich.console import Console
from rich.markup import escape


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a CI log has no width: rich would fold tables at 80 columns
    return Console(stderr=stderr, highlight=False, soft_wrap=True,
                   width=None if stream.isatty() else 160)


_out = _console()
_err = _console(stderr=True)
# context, not module state: a thread `publish` starts copies its context, so a progress
# display's quiet flag and line hook reach its steps and nothing else
_quiet: ContextVar[bool] = ContextVar("basefactory_log_quiet", default=False)


def set_json_mode(enabled: bool) -> None:
    """In JSON mode human progress goes to stderr so stdout stays one JSON document."""
    global _out
    _out = _err if enabled else _console()


def set_quiet(enabled: bool) -> Token[bool]:
    """Quiet (or not) from here on in this context; the token undoes it (`reset_quiet`)."""
    return _quiet.set(enabled)


def reset_quiet(token: Token[bool]) -> None:
    _quiet.reset(token)


def info(message: str) -> None:
    if not _quiet.get():
        _out.print(escape(message))


def detail(message: str) -> None:
    if not _quiet.get():
        _out.print(f"[dim]{escape(message)}[/dim]")


def warning(message: str) -> None:
    _err.print(f"[yellow]basefactory: warning:[/yellow] {escape(message)}")


def error(message: str) -> None:
    _err.print(f"[red]basefactory: error:[/red] {escape(message)}")


def console() -> Console:
    return _out


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Show a phase of work as it starts and as it ends, with its duration and a ✓ or ✕
    (a step, in this package, is one node of the publish DAG: `schedule/`)."""
    start = time.monotonic()
    if not _quiet.get():
        _out.print(f"[bold]▸ {escape(name)}[/bold]")
    try:
        yield
    except BaseException:
        if not _quiet.get():
            _out.print(f"[red]✕ {escape(name)}[/red] [dim]({time.monotonic() - start:.1f}s)[/dim]")
        raise
    if not _quiet.get():
        _out.print(f"[green]✓ {escape(name)}[/green] [dim]({time.monotonic() - start:.1f}s)[/dim]")


def is_tty() -> bool:
    return sys.stdout.isatty()


# Every output line of an external command goes here, so that a live progress display
# (plumbing/progress.py) can show the last one without the command runner knowing of it.
_line_hook: ContextVar[Callable[[str], None] | None] = ContextVar("basefactory_log_line_hook",
                                                                 default=None)


def set_line_hook(hook: Callable[[str], None] | None) -> Token[Callable[[str], None] | None]:
    return _line_hook.set(hook)


def reset_line_hook(token: Token[Callable[[str], None] | None]) -> None:
    _line_hook.reset(token)


def output_line(line: str) -> None:
    hook = _line_hook.get()
    if hook is not None:
        hook(line)
