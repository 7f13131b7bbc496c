"""The publish DAG as data on the session's published factory: `plan --json` lists the
steps with their dependencies and what is current, `run STEP_ID` runs exactly one (a
current one does nothing), and a step whose inputs are not published refuses to run,
naming the step to run first. Real engine, devpi and registry."""

from __future__ import annotations

import json

import jsonschema
import yaml

from basefactory.images.plan import ImageResult
from basefactory.pipeline import Step
from basefactory.refs import repository
from basefactory.session import Session
from tests.helpers import PLATFORM
from tests.reliability.helpers import bf
from tests.unit.test_schedule import schema


def test_the_plan_lists_each_step_with_what_it_needs(
        session: Session, published: dict[str, ImageResult], fitted: list[Step]) -> None:
    config = session.factory.path
    result = bf(config, "plan", "--only", "openai-whisper", "--only", "stt-deps", "--json")
    assert result.returncode == 0, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    wheel = next(i for i in steps if i.startswith("wheel:openai-whisper:"))
    assert set(steps) == {f"platform:{PLATFORM}", wheel, f"image:cuda-deps:{PLATFORM}",
                          f"image:stt-deps:{PLATFORM}", f"fit:cuda-deps:{PLATFORM}",
                          f"fit:stt-deps:{PLATFORM}"}
    # dependencies first, each need a step of the plan
    seen: set[str] = set()
    for step_id, step in steps.items():
        assert set(step["needs"]) <= seen, (step_id, step["needs"])
        seen.add(step_id)
    assert steps[f"image:stt-deps:{PLATFORM}"]["needs"] == [
        f"platform:{PLATFORM}", f"image:cuda-deps:{PLATFORM}", wheel]
    assert steps[f"fit:stt-deps:{PLATFORM}"]["needs"][0] == f"image:stt-deps:{PLATFORM}"
    # what the session published is current, with the digest its tag carries
    for step_id in (f"platform:{PLATFORM}", wheel, f"image:stt-deps:{PLATFORM}"):
        assert steps[step_id]["current"], steps[step_id]
    assert steps[f"image:stt-deps:{PLATFORM}"]["input_digest"] == published["stt-deps"].input_digest
    assert steps[f"image:stt-deps:{PLATFORM}"]["resources"] == {"docker": 1}
    # the same plan as a GitHub workflow validates against the published schema
    workflow = bf(config, "plan", "--only", "openai-whisper", "--only", "stt-deps",
                  "--format", "github-actions")
    assert workflow.returncode == 0, workflow.stderr
    jsonschema.validate(yaml.safe_load(workflow.stdout), schema("github-workflows"))


def test_run_does_one_step_and_a_current_one_does_nothing(
        session: Session, published: dict[str, ImageResult]) -> None:
    config = session.factory.path
    result = bf(config, "run", f"image:stt-deps:{PLATFORM}", "--json")
    assert result.returncode == 0, result.stderr
    [step] = json.loads(result.stdout)["results"]
    assert (step["kind"], step["name"], step["result"]) == ("image", "stt-deps", "current")
    assert step["tag"] == published["stt-deps"].ref
    bad = bf(config, "run", f"image:nope:{PLATFORM}")
    assert bad.returncode == 2 and "no image nope" in bad.stderr and "Traceback" not in bad.stderr
    malformed = bf(config, "run", "image:stt-deps")
    assert malformed.returncode == 2 and "is not a step id" in malformed.stderr


def test_a_step_whose_parent_is_not_published_names_the_step_to_run_first(
        session: Session, published: dict[str, ImageResult]) -> None:
    requirements = session.factory.images_dir / "cuda-deps" / "requirements.in"
    before = requirements.read_text()
    tags = session.registry.tags(repository(session.factory, "stt-deps"))
    locks = {f: f.read_bytes() for f in (requirements.parent / "locks").rglob("*") if f.is_file()}
    try:
        requirements.write_text(before + "six\n")  # new inputs for the parent: not published
        result = bf(session.factory.path, "run", f"image:stt-deps:{PLATFORM}")
    finally:
        requirements.write_text(before)
    assert result.returncode == 2, result.stderr
    assert (f"image:stt-deps:{PLATFORM} cannot run yet: the image it is built on, cuda-deps,"
            " is not published for its current inputs") in result.stderr
    assert f"run image:cuda-deps:{PLATFORM} first" in result.stderr
    # nothing was built or pushed, and the parent's lock was not rewritten
    assert session.registry.tags(repository(session.factory, "stt-deps")) == tags
    assert {f: f.read_bytes() for f in (requirements.parent / "locks").rglob("*")
            if f.is_file()} == locks
