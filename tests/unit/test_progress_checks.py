"""plumbing/progress.py (the publish table: each thread's output lands on its own step's
row, a failure marks the step) and checks.py (`config check` over every input)."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest

from basefactory.checks import check_all
from basefactory.config.factory import load_factory
from basefactory.plumbing import log
from basefactory.plumbing.errors import ConfigError
from basefactory.plumbing.progress import Progress


def test_each_thread_notes_on_its_own_step_and_a_failure_marks_it() -> None:
    progress = Progress(live=False)
    progress.add("wheel:a", "wheel a")
    progress.add("wheel:b", "wheel b")
    with progress:
        def work(key: str, lines: list[str], fail: bool) -> None:
            try:
                with progress.running(key):
                    for line in lines:
                        log.output_line(line)  # what cmd.run does with each output line
                    if fail:
                        raise RuntimeError("boom")
                progress.finish(key, "built")
            except RuntimeError:
                pass

        # as the publish pool runs each step: in a copy of the context that set the hook
        threads = [threading.Thread(target=contextvars.copy_context().run,
                                    args=(work, "wheel:a", ["a1", "a2 ", ""], False)),
                   threading.Thread(target=contextvars.copy_context().run,
                                    args=(work, "wheel:b", ["b1"], True))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    a, b = progress.steps["wheel:a"], progress.steps["wheel:b"]
    assert (a.state, a.last) == ("built", "a2")  # the last non-empty line, stripped
    assert (b.state, b.last) == ("failed", "b1")
    assert a.elapsed().endswith("s") and progress.steps["wheel:a"].ended is not None
    progress.finish("wheel:b", "built")  # a finished step keeps its first verdict
    assert progress.steps["wheel:b"].state == "failed"
    rows = progress.table().row_count
    assert rows == 2


def test_a_line_outside_any_step_is_nobodys() -> None:
    progress = Progress(live=False)
    progress.add("x", "x")
    with progress:
        log.output_line("stray")
    assert progress.steps["x"].last == ""


def test_config_check_lists_every_input_and_names_a_bad_exclude(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "recipes" / "ext.toml").write_text(
        'project = "ext"\n[source]\npath = "src"\n'
        '[test]\ncommand = "python -c \'import ext\'"\n')
    (tmp_path / "factory.toml").write_text(
        '[platforms.p1]\nimage = "example.invalid/pytorch:1"\n')
    found = check_all(load_factory(tmp_path / "factory.toml"))
    assert found["platforms"] == ["p1"] and found["recipes"] == ["ext"] and found["images"] == []
    (tmp_path / "factory.toml").write_text(
        '[wheels]\nexclude = ["nope"]\n[platforms.p1]\nimage = "example.invalid/pytorch:1"\n')
    with pytest.raises(ConfigError) as caught:
        check_all(load_factory(tmp_path / "factory.toml"))
    assert "wheels.exclude: no recipe `nope`" in str(caught.value)
    assert "recipes: ext" in caught.value.hint
