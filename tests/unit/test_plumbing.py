"""plumbing/: content digests (what decides that a step runs again) and the log's context
(a progress display's quiet flag and line hook reach its own steps' threads only)."""

from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path

import pytest

from basefactory.plumbing import digest, log
from tests.helpers import small_factory


def test_a_digest_of_parts_ignores_key_order_and_sees_any_value() -> None:
    assert digest.of({"a": 1, "b": [1, 2]}) == digest.of({"b": [1, 2], "a": 1})
    assert digest.of({"a": 1}) != digest.of({"a": 2})
    assert digest.of("x", "y") != digest.of("xy")
    assert digest.of(Path("/p")) == digest.of("/p")  # anything else by its str


def test_a_tree_digest_sees_names_modes_contents_and_links_not_times(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("echo")
    (tmp_path / ".git").mkdir()
    first = digest.tree_sha256(tmp_path)
    (tmp_path / ".git" / "HEAD").write_text("ref")  # excluded
    os.utime(tmp_path / "a.txt", (1, 1))  # times are not content
    assert digest.tree_sha256(tmp_path) == first
    (tmp_path / "sub" / "run.sh").chmod(0o755)
    moded = digest.tree_sha256(tmp_path)
    assert moded != first
    (tmp_path / "link").symlink_to("a.txt")
    linked = digest.tree_sha256(tmp_path)
    assert linked != moded
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    assert digest.tree_sha256(tmp_path) not in (first, moded, linked)


def test_a_file_digest_is_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    memo = tmp_path / "memo"
    one = digest.file_sha256(path, memo_dir=memo)
    assert one == digest._hash(path) and list(memo.iterdir())
    path.write_bytes(b"two!")  # a new size: a new key
    assert digest.file_sha256(path, memo_dir=memo) == digest._hash(path) != one


def test_the_memo_computes_once_and_survives_a_new_process_state(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> list[int]:
        calls.append(1)
        return [1, 2]

    assert digest.memo(tmp_path, ["k", 1], compute) == [1, 2]
    assert digest.memo(tmp_path, ["k", 1], compute) == [1, 2]
    assert calls == [1]
    assert digest.memo(tmp_path, ["k", 2], compute) == [1, 2] and calls == [1, 1]


def test_the_quiet_flag_and_line_hook_reach_the_threads_that_copy_the_context() -> None:
    seen: list[str] = []
    hook_token = log.set_line_hook(seen.append)
    quiet_token = log.set_quiet(True)
    try:
        found: dict[str, object] = {}

        def step() -> None:
            log.output_line("from a step")
            found["quiet"] = log._quiet.get()

        # as publish submits a step: in a copy of the context at submit time
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(step,))
        worker.start()
        worker.join()
        # a thread that does not copy the context sees neither
        bare = threading.Thread(target=lambda: found.update(bare=log._quiet.get(),
                                                             hook=log._line_hook.get()))
        bare.start()
        bare.join()
    finally:
        log.reset_quiet(quiet_token)
        log.reset_line_hook(hook_token)
    assert seen == ["from a step"] and found["quiet"] is True
    assert found["bare"] is False and found["hook"] is None
    assert log._quiet.get() is False and log._line_hook.get() is None


def test_step_locks_let_different_steps_run_together_and_nothing_beside_a_publish(
        tmp_path: Path) -> None:
    """`run STEP_ID` (Dask workers, CI jobs) holds the factory lock shared and its step's
    exclusively; publish and the build commands hold the factory lock exclusively."""
    from basefactory.plumbing.errors import WriterBusy
    from basefactory.plumbing.writer import one_writer, step_writer

    with step_writer(tmp_path, "wheel:a:p"), step_writer(tmp_path, "wheel:b:p"):
        with pytest.raises(WriterBusy, match="wheel_a_p.lock"), step_writer(tmp_path, "wheel:a:p"):
            pass
        with pytest.raises(WriterBusy, match="publish.lock"), one_writer(tmp_path, "publish"):
            pass
        with one_writer(tmp_path, "publish --executor", shared=True):
            pass
    with one_writer(tmp_path, "publish"), pytest.raises(WriterBusy, match="publish.lock"), \
            step_writer(tmp_path, "wheel:a:p"):
        pass
    with step_writer(tmp_path, "wheel:a:p"):  # every lock above was released
        pass


def test_run_of_a_step_another_run_holds_exits_with_the_locks_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`basefactory run STEP` takes the step's lock before anything else (before the
    services are even checked): the same step is never run twice at once."""
    from basefactory import cli, house
    from basefactory.plumbing.errors import WriterBusy
    from basefactory.plumbing.writer import step_writer

    factory = small_factory(tmp_path)
    monkeypatch.setattr(house, "ensure", lambda f: pytest.fail("ran beside the holder"))
    step = "wheel:torchsort:cpu-py311-torch2.13"
    with step_writer(factory.state_dir, step):
        code = cli.main(["--config", str(factory.path), "run", step])
    assert code == WriterBusy("x").exit_code
    err = capsys.readouterr().err
    assert "another basefactory run holds" in err and "wheel_torchsort_cpu-py311-torch2.13.lock" in err
