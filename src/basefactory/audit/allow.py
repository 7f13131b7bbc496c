"""Declared exceptions to the ABI audit, shared by image definitions and recipes:
`[[audit.allow]] module = "<glob under site-packages>"`, `reason = "..."`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from basefactory.config import Model


class AllowedModule(Model):
    """A shared object that may be shipped although it does not load, with the reason:
    e.g. an optional backend whose library is not installed. Recorded in the audit's
    proof as allowed, never silently dropped."""

    module: Annotated[str, Field(min_length=1)]  # a glob of its path under site-packages
    reason: Annotated[str, Field(min_length=10)]


class Audit(Model):
    allow: tuple[AllowedModule, ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        return [(a.module, a.reason) for a in self.allow]
