"""Declared exceptions to the ABI audit, shared by image definitions and recipes:

    [[audit.allow]]
    module = "numba/np/ufunc/tbbpool*"   # a glob of its path under site-packages
    library = "libtbb.so.12"             # what is expected to be missing (globs), or
    symbol = "_ZN3c10*"                  # which undefined symbols are expected (globs)
    reason = "..."

An allowance names what it expects: the module matching `module` that fails for that
reason is allowed (and recorded so, never dropped); the same module failing for any other
reason (another missing library, an undefined symbol when a library was expected, a crash)
still fails the audit. An allowance written for "no FFmpeg shipped" cannot hide a torch
ABI break in the same files."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from basefactory.config.models import Model

Globs = tuple[Annotated[str, Field(min_length=1)], ...]


class AllowedModule(Model):
    """A shared object that may be shipped although it does not load, with what it is
    expected to lack and why: e.g. an optional backend whose library is not installed."""

    module: Annotated[str, Field(min_length=1)]
    library: Globs = ()
    symbol: Globs = ()
    reason: Annotated[str, Field(min_length=10)]

    @field_validator("library", "symbol", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_what_is_expected(self) -> AllowedModule:
        if not self.library and not self.symbol:
            raise ValueError(
                f"the allowance for `{self.module}` must name what is expected to be missing:"
                ' library = "libtbb.so.12" (a missing library) or symbol = "..." (undefined'
                " symbols), as the audit reported them")
        return self

    def covers(self, failure: dict[str, Any]) -> bool:
        """True if `failure` (a row of the audit's report) is this module failing for the
        expected reason; a crash or any other error is never covered."""
        if not fnmatch.fnmatchcase(str(failure["module"]), self.module):
            return False
        if failure.get("symbol"):
            return any(fnmatch.fnmatchcase(failure["symbol"], g) for g in self.symbol)
        if failure.get("library"):
            return any(fnmatch.fnmatchcase(failure["library"], g) for g in self.library)
        return False

    def key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
        """What a fit's inputs digest records of it."""
        return (self.module, self.library, self.symbol, self.reason)


class Audit(Model):
    allow: tuple[AllowedModule, ...] = ()
