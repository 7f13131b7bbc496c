"""pipeline.py's decisions on a fake session: the order of the stages (platforms, wheels,
images parents first, fits last), what a failure stops and what it lets finish, steps
spread over the builders, and Ctrl-C reporting what finished. The steps' own work (which
the integration tests run for real) is replaced by recorded stand-ins."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory import pipeline
from basefactory.images import plan
from basefactory.images.plan import ImageResult
from basefactory.pipeline import Step


@dataclass
class FakeImage:
    name: str
    parent: str
    platforms: tuple[str, ...] = ("p1", "p2")

    def applies_to(self, platform: str) -> bool:
        return platform in self.platforms


class FakeSession:
    """What publish asks of a session: its platforms, its builders, a session per builder."""

    def __init__(self, platforms: list[str], builders: tuple[str, ...] = ("local",)) -> None:
        self.factory = SimpleNamespace(platforms=lambda names: names or platforms)
        self.docker = SimpleNamespace(name=builders[0])
        self.devpi = None
        self._builders = builders

    def builders(self) -> list[Any]:
        return [SimpleNamespace(name=b) for b in self._builders]

    def on(self, docker: Any) -> FakeSession:
        other = FakeSession([], self._builders)
        other.docker = docker
        return other


@dataclass
class World:
    """The recorded run: each step's start and end, in order, and on which builder."""

    events: list[tuple[str, str]] = field(default_factory=list)
    builders: dict[str, str] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    interrupt: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def work(self, session: Any, key: str) -> None:
        with self.lock:
            self.events.append(("start", key))
            self.builders[key] = session.docker.name
        time.sleep(0.01)  # long enough for a wrongly started sibling to show up
        with self.lock:
            self.events.append(("end", key))
        if key in self.interrupt:
            raise KeyboardInterrupt
        if key in self.fail:
            raise RuntimeError(f"{key} failed")

    def started(self, key: str) -> int:
        return self.events.index(("start", key))

    def ended(self, key: str) -> int:
        return self.events.index(("end", key))

    def ran(self, key: str) -> bool:
        return ("start", key) in self.events


IMAGES = {"cuda-deps": FakeImage("cuda-deps", "platform"),
          "tts-deps": FakeImage("tts-deps", "cuda-deps"),
          "stt-deps": FakeImage("stt-deps", "cuda-deps"),
          "api-lean": FakeImage("api-lean", "slim"),
          "cuda-only": FakeImage("cuda-only", "platform", platforms=("p2",))}
RECIPES = ("torchsort", "mas")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()

    def platform_step(session: Any, platform: str) -> Step:
        w.work(session, f"platform:{platform}")
        return Step("platform", platform, platform, "current", "", 0.0, None, "")

    def wheel_step(session: Any, recipe: Any, platform: str) -> Step:
        w.work(session, f"wheel:{recipe.name}:{platform}")
        return Step("wheel", recipe.name, platform, "built", "", 0.0, None, "")

    def ensure_image(session: Any, image: FakeImage, platform: str, parent: Any) -> ImageResult:
        # the parent handed over is the parent's own result (or the platform's root)
        assert parent == (f"root:{image.parent}" if image.parent not in IMAGES
                          else f"built:{image.parent}:{platform}")
        w.work(session, f"image:{image.name}:{platform}")
        return ImageResult(image.name, platform, "built", f"{platform}-t", f"ref-{image.name}",
                           "digest", None, 0.0)

    def parent_of(session: Any, definitions: Any, image: FakeImage, platform: str, fp: Any,
                  built: ImageResult | None) -> str:
        return f"built:{built.image}:{platform}" if built else f"root:{image.parent}"

    def fit_pairs(session: Any, published: dict[str, list[tuple[str, str]]], every: bool
                  ) -> list[Any]:
        return [SimpleNamespace(platform=p, image=name) for p, found in published.items()
                for name, _ in found]

    def run_fit(session: Any, pair: Any) -> Step:
        w.work(session, f"fit:{pair.image}:{pair.platform}")
        return Step("fit", pair.image, pair.platform, "fits", "", 0.0, None, "")

    def submit_fits(pairs: list[Any], submit: Any) -> list[Any]:
        from functools import partial
        return [submit(f"fit:{p.image}:{p.platform}", "fit", partial(run_fit, pair=p))
                for p in pairs]

    monkeypatch.setattr(pipeline, "run_platform", platform_step)
    monkeypatch.setattr(pipeline, "run_wheel", wheel_step)
    monkeypatch.setattr(pipeline.wheels, "plan", lambda s, recipes, names: [
        (SimpleNamespace(name=r), p) for p in names for r in RECIPES
        if recipes is None or r in recipes])
    monkeypatch.setattr(plan, "load_definitions", lambda s, names=None: IMAGES)
    monkeypatch.setattr(plan, "parent_of", parent_of)
    monkeypatch.setattr(pipeline.store, "require", lambda f, d, p: f"fingerprint:{p}")
    monkeypatch.setattr(pipeline.images, "ensure_image", ensure_image)
    monkeypatch.setattr(pipeline, "_fit_pairs", fit_pairs)
    monkeypatch.setattr(pipeline, "_submit_fits", submit_fits)
    return w


def test_stages_run_in_order_and_an_image_after_its_parent(world: World) -> None:
    steps = pipeline.publish(FakeSession(["p1", "p2"]), jobs=4)  # type: ignore[arg-type]
    platforms = [f"platform:{p}" for p in ("p1", "p2")]
    wheels = [f"wheel:{r}:{p}" for r in RECIPES for p in ("p1", "p2")]
    images = [k for k in world.builders if k.startswith("image:")]
    fits = [k for k in world.builders if k.startswith("fit:")]
    assert max(world.ended(k) for k in platforms) < min(world.started(k) for k in wheels)
    assert max(world.ended(k) for k in wheels) < min(world.started(k) for k in images)
    assert max(world.ended(k) for k in images) < min(world.started(k) for k in fits)
    for platform in ("p1", "p2"):
        for child in ("tts-deps", "stt-deps"):
            assert world.ended(f"image:cuda-deps:{platform}") < \
                world.started(f"image:{child}:{platform}")
    # an image that does not apply to a platform is not built there
    assert world.ran("image:cuda-only:p2") and not world.ran("image:cuda-only:p1")
    # every image built on a platform is tried for fits there (all published)
    assert sorted(fits) == sorted(f"fit:{k.split(':')[1]}:{k.split(':')[2]}" for k in images)
    # the summary: ordered platform, wheel, image, fit; one row per step
    assert [s.kind for s in steps] == sorted((s.kind for s in steps), key=[
        "platform", "wheel", "image", "fit"].index)
    assert len(steps) == len(world.builders)


def test_a_failed_wheel_lets_its_siblings_finish_and_stops_the_images(world: World) -> None:
    world.fail.add("wheel:torchsort:p1")
    with pytest.raises(RuntimeError, match="wheel:torchsort:p1 failed"):
        pipeline.publish(FakeSession(["p1", "p2"]), jobs=1)  # type: ignore[arg-type]
    # submitted after it on one worker, the other wheels still ran to their end
    for key in ("wheel:mas:p1", "wheel:torchsort:p2", "wheel:mas:p2"):
        assert ("end", key) in world.events
    assert not any(k.startswith(("image:", "fit:")) for k in world.builders)


def test_a_failed_parent_builds_no_child_and_lets_other_images_finish(world: World) -> None:
    world.fail.add("image:cuda-deps:p1")
    with pytest.raises(RuntimeError, match="image:cuda-deps:p1 failed"):
        pipeline.publish(FakeSession(["p1", "p2"]), jobs=2)  # type: ignore[arg-type]
    assert not world.ran("image:tts-deps:p1") and not world.ran("image:stt-deps:p1")
    assert world.ran("image:api-lean:p1")  # built on slim: not on the failed parent
    assert world.ran("image:tts-deps:p2")  # the other platform's cuda-deps built
    assert not any(k.startswith("fit:") for k in world.builders)  # no fits half-way


def test_only_named_recipes_and_no_images(world: World, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setattr(pipeline, "split_only", lambda s, only: (["mas"], []))
    steps = pipeline.publish(FakeSession(["p1"]), only=["mas"])  # type: ignore[arg-type]
    assert [(s.kind, s.name) for s in steps] == [("platform", "p1"), ("wheel", "mas")]


def test_fits_can_be_left_out(world: World) -> None:
    steps = pipeline.publish(FakeSession(["p1"]), fits=False)  # type: ignore[arg-type]
    assert {s.kind for s in steps} == {"platform", "wheel", "image"}


def test_steps_are_spread_over_the_builders(world: World) -> None:
    steps = pipeline.publish(FakeSession(["p1", "p2"], builders=("local", "b2")),  # type: ignore[arg-type]
                             jobs=2, fits=False)
    used = {world.builders[f"wheel:{r}:{p}"] for r in RECIPES for p in ("p1", "p2")}
    assert used == {"local", "b2"}
    # each summary row names the engine its step ran on
    assert all(s.builder == world.builders[f"{s.kind}:{s.name}:{s.platform}"]
               for s in steps if s.kind == "wheel")


def test_ctrl_c_reports_the_steps_that_finished(world: World) -> None:
    world.interrupt.add("wheel:mas:p1")
    with pytest.raises(pipeline.Interrupted) as caught:
        pipeline.publish(FakeSession(["p1"]), jobs=1)  # type: ignore[arg-type]
    finished = [(s.kind, s.name) for s in caught.value.steps]
    assert ("platform", "p1") in finished and ("wheel", "torchsort") in finished
    assert ("wheel", "mas") not in finished  # interrupted: not a finished step
    assert not any(k.startswith("image:") for k in world.builders)


def test_the_summary_line_counts_each_result() -> None:
    steps = [Step("wheel", "a", "p", "built", "", 1.0, None, ""),
             Step("wheel", "b", "p", "current", "", 0.0, None, ""),
             Step("image", "c", "p", "current", "", 0.0, None, "")]
    assert pipeline.summary_line(steps, 12.34) == \
        "publish: 3 steps (1 built, 2 current) in 12.3s"


def test_wait_all_raises_the_first_failure_after_every_step_stopped() -> None:
    from concurrent.futures import ThreadPoolExecutor

    finished = []

    def step(n: int) -> Step:
        time.sleep(0.02 * n)
        finished.append(n)
        if n in (1, 2):
            raise ValueError(f"step {n}")
        return Step("wheel", str(n), "p", "built", "", 0.0, None, "")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(step, n) for n in range(4)]
        with pytest.raises(ValueError, match="step 1"):
            pipeline.wait_all(futures)
        assert sorted(finished) == [0, 1, 2, 3]
