"""`basefactory publish`: every platform, then its recipe wheels, then its images, then
the fit tests of each image with each wheel of its platform; each step skipped when what
it would publish for its inputs is already published (a fit: already proven).

Progress goes through the shared logger as timed steps; the result is one summary row per
step (what, result, why, duration, size, tag) for the table or `--json`.
"""

from __future__ import annotations

import contextvars
import itertools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from basefactory.adapters import cmd
from basefactory.images import fit, plan
from basefactory.images import publish as images
from basefactory.images.definition import ImageDef
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.platforms.publish import ensure_platform
from basefactory.plumbing.errors import ConfigError
from basefactory.plumbing.progress import Progress
from basefactory.proofs import Proof
from basefactory.refs import base_ref
from basefactory.session import Session
from basefactory.wheels import publish as wheels
from basefactory.wheels.recipe import factory_recipes, load_recipes


@dataclass(frozen=True)
class Step:
    kind: str  # platform | wheel | image | fit
    name: str
    platform: str
    # built | current | retested | fits | does not fit | build|retest|test (dry run)
    result: str
    reason: str
    duration_s: float
    size: int | None
    tag: str
    builder: str = "local"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Interrupted(Exception):
    """Ctrl-C during publish: the steps that finished before it, for the summary."""

    def __init__(self, steps: list[Step]) -> None:
        super().__init__("interrupted")
        self.steps = steps


def publish(session: Session, *, platforms: list[str] | None = None,
            only: list[str] | None = None, dry_run: bool = False, jobs: int = 1,
            progress: Progress | None = None, fits: bool = True) -> list[Step]:
    """Platforms, then wheels, then images. Independent steps (platforms, recipes, sibling
    images) run concurrently up to `jobs`, spread over the factory's builders; an image
    waits for its parent. A dry run only plans (sequentially: it is quick)."""
    factory = session.factory
    names = factory.platforms(platforms)
    recipes, image_names = split_only(session, only)
    if dry_run:
        return _plan(session, names, recipes, image_names, fits)
    runner = _Runner(session, jobs, progress or Progress(live=False))
    submit = runner.submit
    try:
        # platforms on the local engine: builders pull the published base from the registry
        wait_all([submit(f"platform:{p}", f"platform {p}", partial(run_platform, platform=p))
                  for p in names])
        if recipes is None or recipes:
            wait_all([submit(f"wheel:{r.name}:{p}", f"wheel {r.name} ({p})",
                             partial(run_wheel, recipe=r, platform=p))
                      for r, p in wheels.plan(session, recipes or None, names)])
        if image_names is None or image_names:
            futures, results = _submit_images(session, names, image_names, submit)
            wait_all(futures)
            if fits:
                ensured = {platform: [(r.image, r.tag) for r in (f.result() for f in by.values())]
                           for platform, by in results.items()}
                wait_all(_submit_fits(_fit_pairs(session, ensured, image_names is None),
                                      submit))
    except KeyboardInterrupt:
        runner.pool.shutdown(wait=False, cancel_futures=True)
        cmd.stop_all()
        raise Interrupted(sorted(runner.done, key=_order)) from None
    finally:
        runner.pool.shutdown(wait=True, cancel_futures=True)
    return sorted(runner.done, key=_order)


class _Runner:
    """Steps on a pool of `jobs` threads, round robin over the factory's builders, each
    with its progress row; `done` holds every step that finished."""

    def __init__(self, session: Session, jobs: int, progress: Progress) -> None:
        self.sessions = [session.on(b) for b in session.builders()]
        self.progress = progress
        self.done: list[Step] = []
        self.pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="publish")
        self._counter = itertools.count()

    def submit(self, key: str, label: str, fn: Callable[[Session], Step]) -> Future[Step]:
        self.progress.add(key, label)
        target = self.sessions[next(self._counter) % len(self.sessions)]
        ctx = contextvars.copy_context()

        def run() -> Step:
            with self.progress.running(key):
                step = replace(fn(target), builder=target.docker.name)
            self.progress.finish(key, step.result)
            self.done.append(step)
            return step
        return self.pool.submit(ctx.run, run)


Results = dict[str, dict[str, "Future[plan.ImageResult]"]]  # platform -> image -> result


def _submit_images(session: Session, names: list[str], image_names: list[str] | None,
                   submit: Callable[..., Future[Step]]) -> tuple[list[Future[Step]], Results]:
    definitions = plan.load_definitions(session)
    futures: list[Future[Step]] = []
    by_platform: Results = {}
    for platform in names:
        fp = store.require(session.factory, session.devpi, platform)
        results: dict[str, Future[plan.ImageResult]] = by_platform.setdefault(platform, {})
        for image in plan.walk(definitions, image_names or None, platform):
            name = image.name
            parent_future = results.get(image.parent)
            result_future: Future[plan.ImageResult] = Future()
            results[name] = result_future

            def step(s: Session, image: ImageDef = image, parent_future: Any = parent_future,
                     result_future: Future[plan.ImageResult] = result_future,
                     platform: str = platform, fp: Fingerprint = fp) -> Step:
                try:
                    # a parent image was submitted earlier: its result never deadlocks
                    built = parent_future.result() if parent_future is not None else None
                    parent = plan.parent_of(s, definitions, image, platform, fp, built)
                    result = images.ensure_image(s, image, platform, parent)
                except BaseException as exc:
                    result_future.set_exception(exc)
                    raise
                result_future.set_result(result)
                return Step("image", result.image, result.platform, result.state, result.reason,
                            result.duration_s, result.size, result.ref)

            futures.append(submit(f"image:{name}:{platform}", f"image {name} ({platform})", step))
    return futures, by_platform


def _submit_fits(pairs: list[fit.Pair], submit: Callable[..., Future[Step]]
                 ) -> list[Future[Step]]:
    """Submitted after every image step has finished, so that no build competes with
    them."""
    return [submit(f"fit:{pair.wheel.file.project}:{pair.target.image}:{pair.target.platform}",
                   f"fit {pair.wheel.file.project} -> {pair.target.image}"
                   f" ({pair.target.platform})", partial(run_fit, pair=pair))
            for pair in pairs]


def _fit_pairs(session: Session, images_by_platform: dict[str, list[tuple[str, str]]],
               every: bool) -> list[fit.Pair]:
    """Each image given as (name, tag) per platform (and with `every` the platforms'
    base and slim) with each wheel of its platform that it does not include."""
    definitions = plan.load_definitions(session)
    recipes = factory_recipes(session.factory)
    found: list[fit.Pair] = []
    for platform, published in images_by_platform.items():
        targets = fit.targets(session, platform, published, definitions, platform_images=every)
        found += fit.pairs(session, targets, fit.candidates(session, platform, recipes))
    return found


def fit_published(session: Session, *, platforms: list[str] | None = None,
                  image_names: list[str] | None = None, jobs: int = 1,
                  progress: Progress | None = None) -> list[Step]:
    """`basefactory images fit`: the fit tests of what the registry holds now (each
    image's moving tag; with no names also the platforms' base and slim), e.g. after
    `wheels build` published a wheel that no image has been tried with."""
    definitions = plan.load_definitions(session, image_names)
    names = session.factory.platforms(platforms)
    published = {p: [(n, p) for n in (image_names or definitions)
                     if definitions[n].applies_to(p)] for p in names}
    runner = _Runner(session, jobs, progress or Progress(live=False))
    try:
        wait_all(_submit_fits(_fit_pairs(session, published, image_names is None),
                              runner.submit))
    finally:
        runner.pool.shutdown(wait=True, cancel_futures=True)
    return sorted(runner.done, key=_order)


def run_platform(session: Session, platform: str) -> Step:
    return _platform_step(session, platform)


def run_wheel(session: Session, recipe: Any, platform: str) -> Step:
    return _wheel_step(session, recipe, platform)


def run_fit(session: Session, pair: fit.Pair) -> Step:
    started = time.monotonic()
    proof, tested = fit.ensure_fit(session, pair)
    return _fit_step(pair, proof, tested, round(time.monotonic() - started, 2))


def _fit_step(pair: fit.Pair, proof: Proof | None, tested: bool, duration: float) -> Step:
    outcome = "fits" if proof is not None and proof.passed else "does not fit"
    if proof is None:
        result, reason = "test (dry run)", "no fit test for this image digest and wheel file"
    elif tested:
        result, reason = outcome, str(proof.evidence.get("reason", ""))
    else:  # proven before: the verdict, and why where it does not fit
        result = "current"
        reason = outcome if proof.passed else f"{outcome}: {proof.evidence.get('reason', '')}"
    added = proof.evidence.get("added_mb") if proof is not None else None
    return Step("fit", f"{pair.wheel.file.project} -> {pair.target.image}", pair.target.platform,
                result, reason, duration, int(added * 1e6) if added else None,
                pair.wheel.file.filename)


def wait_all(futures: list[Future[Step]]) -> None:
    """Wait for every step; the first failure is raised once all have stopped."""
    failure: BaseException | None = None
    for future in futures:
        try:
            future.result()
        except Exception as exc:  # a step failed: let its siblings finish, then report
            failure = failure or exc
    if failure is not None:
        raise failure


def _order(step: Step) -> tuple[int, str, str]:
    return ({"platform": 0, "wheel": 1, "image": 2, "fit": 3}[step.kind], step.platform,
            step.name)


def _plan(session: Session, names: list[str], recipes: list[str] | None,
          image_names: list[str] | None, fits: bool) -> list[Step]:
    steps = [_platform_step(session, p, dry_run=True) for p in names]
    if recipes is None or recipes:
        steps += [_wheel_step(session, r, p, dry_run=True)
                  for r, p in wheels.plan(session, recipes or None, names)]
    if image_names is None or image_names:
        planned = images.build_all(session, image_names or None, names, dry_run=True)
        for result in planned:
            steps.append(Step("image", result.image, result.platform, result.state,
                              result.reason, result.duration_s, result.size, result.ref))
        if fits:
            steps += _plan_fits(session, planned, every=image_names is None)
    return steps


def _plan_fits(session: Session, planned: list[plan.ImageResult], *, every: bool
               ) -> list[Step]:
    """The fits of the images that are current (those to be built get theirs after)."""
    current = {p: [(r.image, r.tag) for r in planned if r.platform == p and r.state == "current"]
               for p in dict.fromkeys(r.platform for r in planned)}
    return [_fit_step(pair, pair.proof, False, 0.0) for pair in _fit_pairs(session, current, every)]


def split_only(session: Session, only: list[str] | None
                ) -> tuple[list[str] | None, list[str] | None]:
    """--only NAME...: recipes and images by name (None: all of that kind)."""
    if not only:
        return None, None

    recipe_names = set(load_recipes(session.factory.recipes_dir,
                                    exclude=session.factory.config.wheels.exclude))
    image_names = set(plan.load_definitions(session))
    unknown = [n for n in only if n not in recipe_names | image_names]
    if unknown:
        raise ConfigError(f"--only: no recipe or image {', '.join(unknown)}",
                          hint=f"recipes: {', '.join(sorted(recipe_names))}; images:"
                          f" {', '.join(sorted(image_names))}")
    return [n for n in only if n in recipe_names], [n for n in only if n in image_names]


def _platform_step(session: Session, platform: str, dry_run: bool = False) -> Step:
    started = time.monotonic()
    ref = base_ref(session.factory, platform)
    if dry_run:
        current, reason = platform_state(session, platform,
                                         store.load(session.factory, session.devpi, platform))
        return Step("platform", platform, platform, "current" if current else "build", reason,
                    0.0, None, ref)
    result = ensure_platform(session, platform)
    state = "built" if result.base.built else "current"
    reason = "inputs changed" if result.base.built else "inputs unchanged"
    return Step("platform", platform, platform, state, reason,
                round(time.monotonic() - started, 2), None, ref)


def platform_state(session: Session, platform: str, fp: Fingerprint | None
                   ) -> tuple[bool, str]:
    """(current, why) of a platform: its base is on this engine and its fingerprint (`fp`,
    None when not probed) is stored."""
    local = session.docker.image_id(base_ref(session.factory, platform)) is not None
    if fp is not None and local:
        return True, "base built and probed"
    return False, "no base image on this engine" if not local else "not probed yet"


def _wheel_step(session: Session, recipe: Any, platform: str, dry_run: bool = False) -> Step:
    if dry_run:
        plan = wheels.plan_wheel(session, recipe, platform)
        return Step("wheel", recipe.name, platform, plan.action, plan.reason, 0.0, None,
                    plan.done.filename if plan.done else "")
    result = wheels.ensure_wheel(session, recipe, platform)
    return Step("wheel", recipe.name, platform, result.state, result.reason, result.duration_s,
                None, result.wheel or "")


def summary_line(steps: list[Step], elapsed: float) -> str:
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.result] = counts.get(step.result, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"publish: {len(steps)} steps ({parts}) in {elapsed:.1f}s"
