"""One rule for every read of the index's PyPI mirror.

devpi fetches a project from PyPI on its first read, and under concurrent cold reads a
pip, uv or httpx client can give up before devpi answers (seen at the lock step, in
wheel builds, image builds, tests and fits). A failure whose output says the index did
not answer is retried, 3 tries 5 s and 10 s apart, and by then devpi has the project
cached; any other failure is the step's own and is not retried; the last timeout is one
clear error naming the step and the index.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError

# pip's, uv's and httpx's words for "the index did not answer" (never for "not found")
UNREACHABLE = re.compile(
    r"ReadTimeoutError|ConnectTimeoutError|Max retries exceeded|Connection (refused|reset)|"
    r"Temporary failure in name resolution|error sending request for url|"
    r"operation timed out|connection closed before message completed|"
    r"ReadTimeout|ConnectTimeout|RemoteProtocolError|IncompleteRead",
)
ATTEMPTS = 3
PAUSE_S = 5.0

R = TypeVar("R")


def unreachable(output: str) -> bool:
    return UNREACHABLE.search(output) is not None


def retrying(attempt: Callable[[], R], *, what: str, index: str,
             unanswered: Callable[[R], str | None]) -> R:
    """Run `attempt` until `unanswered(result)` is None (done, or failed for its own
    reason); it returns the failing output when the index did not answer."""
    for n in range(1, ATTEMPTS + 1):
        result = attempt()
        output = unanswered(result)
        if output is None:
            return result
        if n == ATTEMPTS:
            tail = "\n".join(output.strip().splitlines()[-8:])
            raise ServiceError(
                f"{what}: the index {index} did not answer ({ATTEMPTS} tries); nothing was"
                f" recorded or published:\n{tail}",
                hint="check devpi and its mirror (`basefactory status`, .factory/logs/devpi.log);"
                     " a rerun continues where this one stopped",
            )
        log.info(f"{what}: the index did not answer; trying again ({n + 1}/{ATTEMPTS})")
        time.sleep(PAUSE_S * n)
    raise AssertionError("unreachable")


def raising(attempt: Callable[[], R], *, what: str, index: str,
            errors: tuple[type[Exception], ...], message: Callable[[Exception], str]) -> R:
    """`retrying` for a step that raises on failure: an error whose message says the
    index did not answer is retried; any other is raised at once."""
    def once() -> tuple[R | None, Exception | None]:
        try:
            return attempt(), None
        except errors as exc:
            if not unreachable(message(exc)):
                raise
            return None, exc

    result, error = retrying(once, what=what, index=index,
                             unanswered=lambda r: message(r[1]) if r[1] is not None else None)
    assert error is None
    return result  # type: ignore[return-value]
