"""Issues 3, 4 and 7: the commands that must be instant when nothing changed, each beside
the naive way of finding out that nothing changed."""

from __future__ import annotations

import statistics
import sys

from bench.common import ROOT, Figure, Report, run, session, timed

BF = [sys.executable, "-m", "basefactory", "--config", str(ROOT / "factory.toml"), "-q"]


def median(fn: object, n: int = 5) -> float:
    return statistics.median(timed(fn) for _ in range(n))  # type: ignore[arg-type]


def bench(report: Report) -> None:
    # `up` with everything running, vs stopping and starting the embedded services
    up = median(lambda: run([*BF, "up"]))
    cold = timed(lambda: (run([*BF, "down"]), run([*BF, "up"])))
    report.add(Figure("`basefactory up` with everything running (median of 5)", up, cold, "s",
                      "< 1 s", up < 1.0, "naive: stop and start devpi and the registry"))
    # a no-op publish, vs the usual CI job when nothing changed: `docker build` of every
    # image (each layer cached) and `docker push` (each layer already in the registry)
    noop = median(lambda: run([*BF, "publish"]), n=3)
    s = session()
    docker = s.docker.client.path
    from basefactory.images.publish import build_all

    plans = build_all(s, dry_run=True)
    from basefactory.pipeline import publish

    fits = [step for step in publish(s, dry_run=True) if step.kind == "fit"]
    assert fits and all(step.result == "current" for step in fits), \
        "run `basefactory publish` first: the bench measures a publish with every fit proven"
    naive = 0.0
    # twice, the second timed: the first pulls what an earlier bench removed from the
    # engine and fills the build cache, as a CI runner's earlier job would have
    for timing in (False, True):
        for plan in plans:
            ctx = ROOT / "bench" / "work" / "noop" / plan.image
            ctx.mkdir(parents=True, exist_ok=True)
            (ctx / "Dockerfile").write_text(f"FROM {plan.ref}\nRUN python -c 'import sys'\n")
            tag = f"{plan.ref.rsplit(':', 1)[0]}:bench-noop"
            took = timed(lambda tag=tag, ctx=ctx: (  # type: ignore[misc]
                run([docker, "build", "--network", "host", "-q", "-t", tag, str(ctx)]),
                run([docker, "push", tag])))
            naive += took if timing else 0.0
    report.add(Figure(f"no-op `basefactory publish` ({len(plans)} images, all wheels,"
                      f" {len(fits)} proven fit pairs; median of 3)", noop, naive, "s", "<= 1 s",
                      noop <= 1.0,
                      "naive: `docker build` of each image with every layer cached, then"
                      " `docker push` with every layer already in the registry"))
    wheels = median(lambda: run([*BF, "wheels", "build"]), n=3)
    report.add(Figure("no-op `basefactory wheels build` (all recipes; median of 3)", wheels,
                      None, "s", "< 2 s", wheels < 2.0))
