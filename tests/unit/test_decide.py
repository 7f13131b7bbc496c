"""The decisions of planning, without Docker or an index: whether a wheel is current,
re-proven or built (`wheels.publish.decide`), and whether an image's inputs are already
published (`images.plan.decide`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from basefactory.images.plan import decide as decide_image
from basefactory.proofs import Kind, Proof, Subject
from basefactory.wheels.publish import decide as decide_wheel
from basefactory.wheels.recipe import Recipe, load_recipe
from tests.unit.test_recipes import GOOD, write

P = "cpu-py311-torch2.13"
DIGEST = "0123456789ab" + "c" * 52


@pytest.fixture
def recipe(tmp_path: Path) -> Recipe:
    return load_recipe(write(tmp_path, GOOD))


def record(recipe: Recipe, *, passed: bool = True, command: str | None = None,
           requires: list[str] | None = None) -> Proof:
    return Proof.new(Kind.WHEEL_TEST, Subject(platform=P, wheel="demo-1.0-py3-none-any.whl",
                                              wheel_sha256="s" * 64),
                     inputs="s" * 64, passed=passed,
                     evidence={"command": command or recipe.test.command,
                               "test_requires": requires if requires is not None
                               else list(recipe.test.requires)})


def test_a_published_wheel_with_a_passed_record_of_its_test_is_current(recipe: Recipe) -> None:
    assert decide_wheel(published_file=True, any_file=True, record=record(recipe),
                        recipe=recipe, retest=False) == ("current", "inputs unchanged")
    assert decide_wheel(published_file=True, any_file=True, record=record(recipe),
                        recipe=recipe, retest=True) == ("retest", "--retest")
    # --retest of a file with no passed record says why it needed one anyway
    assert decide_wheel(published_file=True, any_file=True, record=None, recipe=recipe,
                        retest=True) == (
        "retest", "published without a passed test record (an interrupted run)")


@pytest.mark.parametrize(("proof", "why"), [
    (None, "published without a passed test record (an interrupted run)"),
    ("failed", "published without a passed test record (an interrupted run)"),
    ("other-command", "the recipe's test changed since its record: re-proving the published file"),
    ("other-requires", "the recipe's test changed since its record: re-proving the published file"),
])
def test_a_published_wheel_without_a_current_passed_record_is_re_proven(
        recipe: Recipe, proof: str | None, why: str) -> None:
    made = {None: None, "failed": record(recipe, passed=False),
            "other-command": record(recipe, command="python -c 'import other'"),
            "other-requires": record(recipe, requires=["pytest"])}[proof]
    assert decide_wheel(published_file=True, any_file=True, record=made, recipe=recipe,
                        retest=False) == ("retest", why)


def test_no_file_for_these_inputs_is_built(recipe: Recipe) -> None:
    assert decide_wheel(published_file=False, any_file=False, record=None, recipe=recipe,
                        retest=False) == ("build", "first build")
    assert decide_wheel(published_file=False, any_file=True, record=None, recipe=recipe,
                        retest=True) == (
        "build", "inputs changed (recipe, source, platform or build template)")


def test_an_image_whose_inputs_are_tagged_is_current_on_its_newest_day() -> None:
    tags = [P, f"{P}-20261130-{DIGEST[:12]}", f"{P}-20261124-{DIGEST[:12]}",
            f"{P}-20261127-{DIGEST[:12]}", f"{P}-20261201-ffffffffffff"]
    assert decide_image(tags, P, DIGEST, lock_reused=True) == (
        f"{P}-20261130-{DIGEST[:12]}", "current", "inputs unchanged")


def test_an_image_is_built_saying_why() -> None:
    assert decide_image([], P, DIGEST, lock_reused=True) == (None, "build", "first build")
    other = [f"{P}-20261130-ffffffffffff"]
    assert decide_image(other, P, DIGEST, lock_reused=False) == (
        None, "build", "requirements or parent changed (new lock)")
    assert decide_image(other, P, DIGEST, lock_reused=True) == (
        None, "build", "parent, recipe wheels, Dockerfile, apt or env changed")


def test_another_platform_whose_name_starts_the_same_is_not_this_one() -> None:
    """`cpu` and `cpu-py311-torch2.13` are two platforms: a tag of the second is neither
    the first's build nor a reason to call the first's build anything but the first."""
    tags = [f"{P}-20261130-{DIGEST[:12]}", P]
    assert decide_image(tags, "cpu", DIGEST, lock_reused=True) == (None, "build", "first build")
    assert decide_image(["cpu"], "cpu", DIGEST, lock_reused=True) == (None, "build", "first build")
