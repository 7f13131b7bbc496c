"""Walk a real run of one basefactory function through the package's rooms (its modules),
and count how often the route enters each room. Issue 28's measure of a floor plan: a
route that keeps going back to rooms it already left (a helper in the orchestrator that
a callee calls back, one step split over three calls into the same module) is one that a
reader has to follow back and forth.

    python -m tests.walk basefactory.images.publish:ensure_image -- images build api-lean

runs the CLI with the given arguments under a profiler, and from the first call of the
named function to its return records each call that crosses from one room into another.
The floors below the stages (plumbing, adapters, config, refs) are corridors, not rooms:
every room uses them, and a call into one is not a visit. A method of a class (a data
model's property, a pydantic validator, a dataclass's __init__) is carried with its
object, not visited: the walk is the route through the modules' functions (their nested
functions and lambdas included). `--methods` counts methods as visits too. Prints the
path (returns shown in parentheses) and, per room, how many times a call entered it;
`--json` for a script.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from types import FrameType
from typing import Any

CORRIDORS = ("basefactory.plumbing", "basefactory.adapters", "basefactory.config",
             "basefactory.refs")


def room(frame: FrameType) -> tuple[str, bool] | None:
    """(the module's room, whether the function is a method), or None for a corridor or
    code outside basefactory."""
    name = frame.f_globals.get("__name__", "")
    if not name.startswith("basefactory") or name.startswith(CORRIDORS):
        return None
    code = frame.f_code
    parts = code.co_qualname.split(".")
    # a dataclass's generated __init__ is a nested function of dataclasses' factory
    dunder = code.co_name.startswith("__") and code.co_name.endswith("__")
    method = dunder or (len(parts) > 1 and parts[-2] != "<locals>")
    return str(name).removeprefix("basefactory."), method


class Walk:
    """The rooms entered, in order, while `target` (module:function) runs."""

    def __init__(self, target: str, *, methods: bool = False) -> None:
        self.module, _, self.function = target.partition(":")
        self.methods = methods
        # one per call of the target (a build of several images calls it once for each)
        self.routes: list[list[str]] = []  # each room entered by a call from another room
        self.paths: list[list[str]] = []  # the same with the returns: where the reader goes
        self.depth = 0  # > 0 while inside the target
        # (room, carried) of each open basefactory frame inside the target: a carried
        # method keeps its module's room (so what it calls there is no visit) unseen
        self.stack: list[tuple[str, bool]] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        found = room(frame)
        is_target = (frame.f_code.co_name == self.function
                     and frame.f_globals.get("__name__") == self.module)
        if event == "call":
            if is_target:
                self.depth += 1
                if self.depth == 1:
                    here = found[0] if found else "?"
                    self.routes.append([here])
                    self.paths.append([here])
                    self.stack = [(here, False)]
                    return
            if self.depth == 0 or found is None:
                return
            here, method = found
            carried = method and not self.methods
            if not carried and self.stack and self.stack[-1][0] != here:
                self.routes[-1].append(here)
                self.paths[-1].append(here)
            self.stack.append((here, carried))
        else:
            if self.depth == 0 or found is None:
                return
            if is_target:
                self.depth -= 1
                if self.depth == 0:
                    return
            if not self.stack:
                return
            here, carried = self.stack.pop()
            back = next((r for r, c in reversed(self.stack) if not c), None)
            if not carried and back is not None and back != here \
                    and self.paths[-1][-1] != f"({back})":
                self.paths[-1].append(f"({back})")

    @property
    def route(self) -> list[str]:
        """The last call's route."""
        return self.routes[-1] if self.routes else []

    @property
    def path(self) -> list[str]:
        return self.paths[-1] if self.paths else []

    def visits(self, call: int = -1) -> Counter[str]:
        """How often each room was entered in one call of the target (the last by default)."""
        return Counter(self.routes[call]) if self.routes else Counter()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.walk")
    parser.add_argument("target", help="module:function, e.g. basefactory.images.publish:ensure_image")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--methods", action="store_true", help="count methods as visits")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the basefactory arguments")
    args = parser.parse_args(argv)
    from basefactory import cli

    walk = Walk(args.target, methods=args.methods)
    sys.setprofile(walk)
    try:
        status = cli.main([a for a in args.cli if a != "--"])
    except SystemExit as exc:
        status = int(exc.code or 0)
    finally:
        sys.setprofile(None)
    calls = [{"route": route, "path": path, "visits": dict(walk.visits(i))}
             for i, (route, path) in enumerate(zip(walk.routes, walk.paths, strict=True))]
    if args.json:
        print(json.dumps({"calls": calls, "status": status}))
    else:
        for n, call in enumerate(calls, 1):
            print(f"call {n} of {len(calls)}: the path (in parentheses: back in a room after"
                  " a call returned):")
            print(" -> ".join(call["path"]))
            print("rooms entered by a call from another room:")
            for name, count in Counter(call["visits"]).most_common():
                print(f"{count:3d}  {name}")
    return 0 if walk.routes else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
