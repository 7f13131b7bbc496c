"""Issue 27: the fit phase of the demo platform, pip's resolver first (what publish does)
beside installing every pair and judging after (the way fits were run before): the same
pairs, one run, each pair's verdict compared. Pairs that resolve to a refusal skip the
download and install of torch (757 MB) into the torch-less tiers."""

from __future__ import annotations

import time

from basefactory.images import fit
from basefactory.images.plan import load_definitions
from basefactory.pipeline import _fit_pairs
from bench.common import PLATFORM, Figure, Report, session


def bench(report: Report) -> None:
    s = session()
    definitions = load_definitions(s)
    published = [(n, PLATFORM) for n, d in definitions.items() if d.applies_to(PLATFORM)]
    # every pair publish fits: each image and the platform's base and slim, each wheel
    pairs = _fit_pairs(s, {PLATFORM: published}, True)
    assert pairs, "run `basefactory publish` first: the bench fits what is published"
    timings: dict[bool, float] = {}
    verdicts: dict[bool, dict[str, tuple[bool, str]]] = {}
    for resolve_first in (True, False):
        started = time.perf_counter()
        found = {}
        for pair in pairs:
            stem = f"bench-{pair.wheel.file.project}-{pair.target.image}-{int(resolve_first)}"
            proof = fit.run_fit(s, pair, work=s.factory.state_dir / "build" / "fits" / stem,
                                log_file=s.factory.logs_dir / "fits" / f"{stem}.log",
                                resolve_first=resolve_first)
            found[f"{pair.wheel.file.project} -> {pair.target.image}"] = (
                proof.passed, str(proof.evidence.get("reason", "")))
        timings[resolve_first] = time.perf_counter() - started
        verdicts[resolve_first] = found
    same = all(verdicts[True][k][0] == verdicts[False][k][0] for k in verdicts[True])
    refused = sum(1 for ok, _ in verdicts[True].values() if not ok)
    report.add(Figure(f"fit phase of {PLATFORM} ({len(pairs)} pairs, {refused} refused;"
                      f" verdicts {'identical' if same else 'DIFFERENT'})", timings[True],
                      timings[False], "s", "faster, same verdicts", same and
                      timings[True] < timings[False],
                      "naive: install every pair, then judge (the fit tests before pip's"
                      " resolution went first)"))
    for key in sorted(verdicts[True]):
        report.notes.append(f"fit {key}: {verdicts[True][key][1]} | install-first:"
                            f" {verdicts[False][key][1]}")
