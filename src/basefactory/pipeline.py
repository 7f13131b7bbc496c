"""`basefactory publish`: every platform, then its recipe wheels, then its images, each
step skipped when what it would publish for its inputs is already published.

Progress goes through the shared logger as timed steps; the result is one summary row per
step (what, result, why, duration, size, tag) for the table or `--json`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from basefactory.adapters import cmd
from basefactory.images import service as images
from basefactory.images.definition import ImageDef, root_of
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.platforms.service import ensure_platform
from basefactory.plumbing import log
from basefactory.plumbing.progress import Progress
from basefactory.refs import base_ref
from basefactory.session import Session
from basefactory.wheels import service as wheels


@dataclass(frozen=True)
class Step:
    kind: str  # platform | wheel | image
    name: str
    platform: str
    result: str  # built | current | retested | build (dry run) | retest (dry run)
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
            progress: Progress | None = None) -> list[Step]:
    """Platforms, then wheels, then images. Independent steps (platforms, recipes, sibling
    images) run concurrently up to `jobs`, spread over the factory's builders; an image
    waits for its parent. A dry run only plans (sequentially: it is quick)."""
    factory = session.factory
    names = factory.platforms(platforms)
    recipes, image_names = _split_only(session, only)
    if dry_run:
        return _plan(session, names, recipes, image_names)
    progress = progress or Progress(live=False)
    builders = session.builders()
    sessions = [session.on(b) for b in builders]
    done: list[Step] = []
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="publish")
    counter = iter(range(1 << 30))

    def submit(key: str, label: str, fn: Callable[[Session], Step]) -> Future[Step]:
        progress.add(key, label)
        target = sessions[next(counter) % len(sessions)]  # round robin over the builders
        ctx = contextvars.copy_context()

        def run() -> Step:
            with progress.running(key):
                step = replace(fn(target), builder=target.docker.name)
            progress.finish(key, step.result)
            done.append(step)
            return step
        return pool.submit(ctx.run, run)

    try:
        # platforms on the local engine: builders pull the published base from the registry
        wait_all([submit(f"platform:{p}", f"platform {p}", partial(_on_platform, p))
                  for p in names])
        if recipes is None or recipes:
            wait_all([submit(f"wheel:{r.name}:{p}", f"wheel {r.name} ({p})",
                             partial(_on_wheel, r, p))
                      for r, p in wheels.plan(session, recipes or None, names)])
        if image_names is None or image_names:
            wait_all(_submit_images(session, names, image_names, submit))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        cmd.stop_all()
        raise Interrupted(sorted(done, key=_order)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(done, key=_order)


def _submit_images(session: Session, names: list[str], image_names: list[str] | None,
                   submit: Callable[..., Future[Step]]) -> list[Future[Step]]:
    definitions = images.load_definitions(session)
    futures: list[Future[Step]] = []
    for platform in names:
        fp = store.require(session.factory, session.devpi, platform)
        results: dict[str, Future[images.ImageResult]] = {}
        for name in images.needed(definitions, image_names or None):
            image = definitions[name]
            if not image.applies_to(platform) or (
                    image.parent in definitions and image.parent not in results):
                continue
            parent_future = results.get(image.parent)
            result_future: Future[images.ImageResult] = Future()
            results[name] = result_future

            def step(s: Session, image: ImageDef = image, parent_future: Any = parent_future,
                     result_future: Future[images.ImageResult] = result_future,
                     platform: str = platform, fp: Fingerprint = fp) -> Step:
                try:
                    if parent_future is not None:
                        p = parent_future.result()  # submitted earlier: never a deadlock
                        root = root_of(definitions, image.name)
                        parent = images.Parent(p.ref, p.input_digest, p.installed,
                                               fp.torch if root == "platform" else None)
                    else:
                        parent = images.root_parent(s, image.parent, platform, fp)
                    result = images.ensure_image(s, image, platform, parent)
                except BaseException as exc:
                    result_future.set_exception(exc)
                    raise
                result_future.set_result(result)
                return Step("image", result.image, result.platform, result.state, result.reason,
                            result.duration_s, result.size, result.ref)

            futures.append(submit(f"image:{name}:{platform}", f"image {name} ({platform})", step))
    return futures


def _on_platform(platform: str, session: Session) -> Step:
    return _platform_step(session, platform)


def _on_wheel(recipe: Any, platform: str, session: Session) -> Step:
    return _wheel_step(session, recipe, platform)


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
    return ({"platform": 0, "wheel": 1, "image": 2}[step.kind], step.platform, step.name)


def _plan(session: Session, names: list[str], recipes: list[str] | None,
          image_names: list[str] | None) -> list[Step]:
    steps = [_platform_step(session, p, dry_run=True) for p in names]
    if recipes is None or recipes:
        steps += [_wheel_step(session, r, p, dry_run=True)
                  for r, p in wheels.plan(session, recipes or None, names)]
    if image_names is None or image_names:
        for result in images.build_all(session, image_names or None, names, dry_run=True):
            steps.append(Step("image", result.image, result.platform, result.state,
                              result.reason, result.duration_s, result.size, result.ref))
    return steps


def _split_only(session: Session, only: list[str] | None
                ) -> tuple[list[str] | None, list[str] | None]:
    """--only NAME...: recipes and images by name (None: all of that kind)."""
    if not only:
        return None, None
    from basefactory.plumbing.errors import ConfigError
    from basefactory.wheels.recipe import load_recipes

    recipe_names = set(load_recipes(session.factory.recipes_dir))
    image_names = set(images.load_definitions(session))
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
        probed = store.load(session.factory, session.devpi, platform) is not None
        local = session.docker.image_id(ref) is not None
        action = "current" if probed and local else "build"
        reason = "base built and probed" if action == "current" else (
            "no base image on this engine" if not local else "not probed yet")
        return Step("platform", platform, platform, action, reason, 0.0, None, ref)
    result = ensure_platform(session, platform)
    state = "built" if result.base.built else "current"
    reason = "inputs changed" if result.base.built else "inputs unchanged"
    return Step("platform", platform, platform, state, reason,
                round(time.monotonic() - started, 2), None, ref)


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


def log_summary(steps: list[Step], elapsed: float) -> None:
    log.info(summary_line(steps, elapsed))
