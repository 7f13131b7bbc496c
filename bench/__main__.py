"""`python -m bench [NAME ...]`: run the benchmarks and write bench/results.md.

Figures are kept per benchmark in bench/results.json, so that running one benchmark again
replaces its own figures and leaves the others' (each says on which machine and when it
ran); results.md is rendered from all of them.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    catalog,
    coldstart,
    dask,
    fits,
    images,
    indextts,
    noop,
    push,
    registry_auth,
    registry_token,
    wheel_install,
)
from bench.common import Figure, Report, machine

BENCHES = {"registry_auth": registry_auth.bench, "noop": noop.bench,
           "fits": fits.bench, "wheel_install": wheel_install.bench, "images": images.bench,
           "catalog": catalog.bench, "coldstart": coldstart.bench, "indextts": indextts.bench,
           "dask": dask.bench, "push": push.bench, "registry_token": registry_token.bench}
# run only when named (`python -m bench indextts`): they need a heavy tier published first
# (`make indextts`)
HEAVY = {"indextts"}
HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    unknown = [n for n in argv if n not in BENCHES]
    if unknown:
        print(f"bench: no benchmark {', '.join(unknown)}; there are {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    store = HERE / "results.json"
    results: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    for name in argv or [n for n in BENCHES if n not in HEAVY]:
        print(f"== {name}", flush=True)
        report = Report()
        started = time.monotonic()
        BENCHES[name](report)
        results[name] = {"machine": machine(), "seconds": round(time.monotonic() - started),
                         "figures": [asdict(f) for f in report.figures]}
        # saved after each benchmark: a crash in a later one keeps the earlier figures
        store.write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "results.md").write_text(render(results))
    print(f"wrote {HERE / 'results.md'}")
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        "# basefactory benchmarks",
        "",
        "`make bench` runs each benchmark beside its naive counterpart in one run.",
        "",
        "| benchmark | basefactory | naive | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    notes, machines = [], []
    for name in BENCHES:
        if name not in results:
            continue
        entry = results[name]
        machines.append(f"- `{name}`: {entry['machine']}; {entry['seconds']} s")
        for data in entry["figures"]:
            f = Figure(**data)
            naive = f"{f.naive:.2f} {f.unit}" if f.naive is not None else "—"
            lines.append(f"| {f.name} | {f.ours:.2f} {f.unit} | {naive} | {f.ratio} |"
                         f" {f.target} | {'yes' if f.met else '**no**'} |")
            if f.note:
                notes.append(f"- {f.name}: {f.note}")
    lines += ["", "Where and when each ran:", "", *machines]
    if notes:
        lines += ["", "How each was measured:", "", *notes]
    # the heavy tiers (make cuda, make test-cuda, ...) are timed by hand, outside `make
    # bench`: their file is kept beside this one and carried into it
    heavy = HERE / "heavy-tiers.md"
    if heavy.exists():
        lines += ["", heavy.read_text().rstrip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
