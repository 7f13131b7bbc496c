"""The publish DAG exported as CI pipelines, validated against the schemas those systems
publish (vendored by PyPI's check-jsonschema: GitLab's own CI schema and SchemaStore's
GitHub workflow schema), and the step ids a user types."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from basefactory.plumbing.errors import ConfigError
from basefactory.schedule import export
from basefactory.schedule.dag import Node, order, parse_id

P = "cpu-py311-torch2.13"


def node(step_id: str, *needs: str, current: bool = False, cuda: bool = False) -> Node:
    kind, parts = parse_id(step_id)
    return Node(step_id, kind, parts[0], parts[-1], needs, current, "d" * 64, "why",
                {"docker": 1, **({"cuda_toolkit": 1} if cuda else {})})


DAG = [
    node(f"platform:{P}", current=True),
    node(f"wheel:torchsort:{P}", f"platform:{P}", cuda=True),
    node(f"wheel:mas:{P}", f"platform:{P}", current=True),
    node(f"image:cuda-deps:{P}", f"platform:{P}", current=True),
    node(f"image:tts-deps:{P}", f"platform:{P}", f"image:cuda-deps:{P}", f"wheel:mas:{P}",
         f"wheel:torchsort:{P}"),
    node(f"fit:tts-deps:{P}", f"image:tts-deps:{P}", f"wheel:mas:{P}", f"wheel:torchsort:{P}"),
]


def schema(name: str) -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendored / f"{name}.json").read_text())


def valid(document: dict[str, Any], name: str) -> None:
    # through YAML and back, as the CI system reads the file `plan` writes
    text = yaml.safe_dump(document, sort_keys=False)
    jsonschema.validate(yaml.safe_load(text), schema(name))


def test_a_gitlab_child_pipeline_runs_each_step_after_what_it_needs() -> None:
    pipeline = export.gitlab_ci(DAG, config="factory.toml")
    valid(pipeline, "gitlab-ci")
    jobs = {k: v for k, v in pipeline.items() if k != "stages"}
    # current steps are no jobs, and no job waits for one
    assert list(jobs) == ["s_wheel_torchsort_cpu-py311-torch2_13",
                          "s_image_tts-deps_cpu-py311-torch2_13",
                          "s_fit_tts-deps_cpu-py311-torch2_13"]
    tts = jobs["s_image_tts-deps_cpu-py311-torch2_13"]
    assert tts["needs"] == ["s_wheel_torchsort_cpu-py311-torch2_13"]
    assert tts["script"] == [f"basefactory --config factory.toml run image:tts-deps:{P}"]
    assert jobs["s_wheel_torchsort_cpu-py311-torch2_13"]["tags"] == ["cuda_toolkit", "docker"]
    assert jobs["s_fit_tts-deps_cpu-py311-torch2_13"]["needs"] == [
        "s_image_tts-deps_cpu-py311-torch2_13", "s_wheel_torchsort_cpu-py311-torch2_13"]


def test_a_github_workflow_runs_each_step_on_a_runner_with_its_resources() -> None:
    workflow = export.github_actions(DAG)
    valid(workflow, "github-workflows")
    jobs = workflow["jobs"]
    fit = jobs["s_fit_tts-deps_cpu-py311-torch2_13"]
    assert fit["needs"] == ["s_image_tts-deps_cpu-py311-torch2_13",
                            "s_wheel_torchsort_cpu-py311-torch2_13"]
    assert fit["steps"][-1] == {"run": f"basefactory run fit:tts-deps:{P}"}
    assert jobs["s_wheel_torchsort_cpu-py311-torch2_13"]["runs-on"] == [
        "self-hosted", "cuda_toolkit", "docker"]
    assert "needs" not in jobs["s_wheel_torchsort_cpu-py311-torch2_13"]


def test_everything_current_is_still_a_valid_pipeline() -> None:
    current = [node(f"platform:{P}", current=True)]
    valid(export.gitlab_ci(current), "gitlab-ci")
    valid(export.github_actions(current), "github-workflows")
    assert list(export.github_actions(current)["jobs"]) == ["current"]


def test_the_schemas_catch_a_broken_pipeline() -> None:
    """The validation can fail: a job without what it must have is refused."""
    workflow = export.github_actions(DAG)
    del workflow["jobs"]["s_fit_tts-deps_cpu-py311-torch2_13"]["runs-on"]
    with pytest.raises(jsonschema.ValidationError):
        valid(workflow, "github-workflows")
    pipeline = export.gitlab_ci(DAG)
    pipeline["s_fit_tts-deps_cpu-py311-torch2_13"]["needs"] = "not a list"
    with pytest.raises(jsonschema.ValidationError):
        valid(pipeline, "gitlab-ci")


def test_a_step_listed_before_what_it_needs_is_refused() -> None:
    with pytest.raises(ValueError, match=f"image:tts-deps:{P} comes before"):
        order([DAG[4], *DAG[:4]])
    twins = [node(f"wheel:a.b:{P}"), node(f"wheel:a_b:{P}")]
    with pytest.raises(ValueError, match="collide"):
        export.gitlab_ci(twins)


@pytest.mark.parametrize("step_id", ["image:tts-deps", "wheel::p", "bogus:x", "fit:a:b:c", ""])
def test_a_malformed_step_id_says_what_one_looks_like(step_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_id(step_id)
    assert caught.value.hint is not None and "image:IMAGE:P" in caught.value.hint


def test_step_ids_parse_to_their_parts() -> None:
    assert parse_id(f"fit:base:{P}") == ("fit", ["base", P])
    assert parse_id(f"platform:{P}") == ("platform", [P])
    assert export.job_name(f"wheel:index-tts:{P}") == "s_wheel_index-tts_cpu-py311-torch2_13"
