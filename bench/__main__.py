"""`python -m bench [NAME ...]`: run the benchmarks and write bench/results.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench import images, noop, wheel_install
from bench.common import Report, machine

BENCHES = {"noop": noop.bench, "wheel_install": wheel_install.bench, "images": images.bench}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    report = Report()
    started = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        BENCHES[name](report)
    lines = [
        "# basefactory benchmarks",
        "",
        f"Machine: {machine()}. `make bench` ran in {time.monotonic() - started:.0f} s.",
        "Each figure is measured in the same run as its naive counterpart.",
        "",
        "| benchmark | basefactory | naive | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.figures:
        naive = f"{f.naive:.2f} {f.unit}" if f.naive is not None else "—"
        lines.append(f"| {f.name} | {f.ours:.2f} {f.unit} | {naive} | {f.ratio} | {f.target} |"
                     f" {'yes' if f.met else '**no**'} |")
    notes = [f"- {f.name}: {f.note}" for f in report.figures if f.note]
    if notes:
        lines += ["", "How each was measured:", "", *notes]
    out = Path(__file__).resolve().parent / "results.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
