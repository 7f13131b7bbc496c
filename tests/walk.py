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
        self.route: list[str] = []  # each room entered by a call from another room
        self.path: list[str] = []  # the same with the returns: where the reader goes
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
                    self.route.append(here)
                    self.path.append(here)
                    self.stack = [(here, False)]
                    return
            if self.depth == 0 or found is None:
                return
            here, method = found
            carried = method and not self.methods
            if not carried and self.stack and self.stack[-1][0] != here:
                self.route.append(here)
                self.path.append(here)
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
                    and self.path[-1] != f"({back})":
                self.path.append(f"({back})")

    def visits(self) -> Counter[str]:
        return Counter(self.route)


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
    visits = walk.visits()
    if args.json:
        print(json.dumps({"route": walk.route, "path": walk.path, "visits": dict(visits),
                          "status": status}))
    else:
        print("path (a room in parentheses: back in it after a call returned):")
        print(" -> ".join(walk.path))
        print("rooms entered by a call from another room:")
        for name, count in visits.most_common():
            print(f"{count:3d}  {name}")
    return 0 if walk.route else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
