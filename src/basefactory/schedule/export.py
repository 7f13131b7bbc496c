"""The DAG as a CI system's pipeline: one job per step that runs `basefactory run
STEP_ID`, with the step's dependencies as the job's `needs`. Current steps are left out
(they would be no-ops) and so are the edges to them. The runner is the user's: a host (or
runner tag) with Docker and the factory's checkout; `--config` is passed through.

    gitlab-ci       a child pipeline (`trigger: include:` it from the parent), each job
                    with `needs:` edges and the step's resources as runner `tags`
    github-actions  a workflow whose jobs `needs:` each other, on self-hosted runners
                    labelled with the step's resources
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from basefactory.schedule.dag import Node, order


def job_name(step_id: str) -> str:
    """A job id every CI accepts (GitHub's: letters, digits, `_`, `-`, not a digit first)."""
    return "s_" + re.sub(r"[^A-Za-z0-9_-]", "_", step_id)


def _jobs(nodes: list[Node]) -> list[Node]:
    todo = [n for n in order(nodes) if not n.current]
    names = [job_name(n.id) for n in todo]
    if len(set(names)) != len(names):  # two ids that differ only in punctuation
        raise ValueError(f"step ids collide as job names: {sorted(names)}")
    return todo


def _command(step_id: str, config: str | None) -> str:
    return shlex.join(["basefactory", *(["--config", config] if config else []), "run", step_id])


def gitlab_ci(nodes: list[Node], *, config: str | None = None) -> dict[str, Any]:
    todo = _jobs(nodes)
    pending = {n.id for n in todo}
    pipeline: dict[str, Any] = {"stages": ["publish"]}
    for node in todo:
        pipeline[job_name(node.id)] = {
            "stage": "publish",
            "script": [_command(node.id, config)],
            "needs": [job_name(n) for n in node.needs if n in pending],
            "tags": sorted(node.resources),
            "variables": {"BASEFACTORY_STEP": node.id},
        }
    if not todo:  # a pipeline needs one job: say that everything is current
        pipeline["current"] = {"stage": "publish", "script": ["echo every step is current"]}
    return pipeline


def github_actions(nodes: list[Node], *, config: str | None = None) -> dict[str, Any]:
    todo = _jobs(nodes)
    pending = {n.id for n in todo}
    jobs: dict[str, Any] = {}
    for node in todo:
        job: dict[str, Any] = {
            "name": node.id,
            "runs-on": ["self-hosted", *sorted(node.resources)],
            "steps": [{"uses": "actions/checkout@v4"},
                      {"run": _command(node.id, config)}],
        }
        needs = [job_name(n) for n in node.needs if n in pending]
        if needs:
            job["needs"] = needs
        jobs[job_name(node.id)] = job
    if not jobs:
        jobs["current"] = {"runs-on": "ubuntu-latest",
                           "steps": [{"run": "echo every step is current"}]}
    return {"name": "basefactory publish", "on": {"workflow_dispatch": {}}, "jobs": jobs}
