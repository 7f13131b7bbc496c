"""images/smoke.py: the smoke test's script and verdicts, run on this host's venv through
`HostEngine` (the real script; the venv stands in for the image). Each refusal a publish
relies on (a promised package that does not import, a broken `pip check`, another torch,
an image over its budget) is made to happen here and must raise TestFailed."""

from __future__ import annotations

from pathlib import Path

import pytest

from basefactory.images.smoke import OUTPUT_LINES, smoke_test
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs import Kind
from tests.helpers import HostEngine


def run(tmp_path: Path, engine: HostEngine | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(image="api", platform="p1", promised=["packaging", "httpx"],
                                   torch=None, budget_mb=10, command=None, work=tmp_path,
                                   log_file=tmp_path / "smoke.log")
    args.update(overrides)
    return smoke_test(engine or HostEngine(), "factory/api:p1", **args)  # type: ignore[arg-type]


def test_a_clean_image_passes_with_its_manifest_and_a_proof(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert {"packaging", "httpx"} <= set(result.imported)
    names = {m["name"].lower() for m in result.manifest}
    assert {"packaging", "httpx", "pip"} <= names
    assert all(m["size"] >= 0 for m in result.manifest)
    assert result.size == 1_000_000 and result.torch is None and result.output == []
    proof = result.proof(image="api", platform="p1", inputs="d" * 64)
    assert proof.kind == Kind.SMOKE and proof.passed
    assert proof.evidence["imported"] == result.imported
    assert proof.evidence["pip_check"] == "ok"


def test_a_promised_package_that_is_not_installed_fails(tmp_path: Path) -> None:
    with pytest.raises(TestFailed, match="not-here-at-all: not installed"):
        run(tmp_path, promised=["packaging", "not-here-at-all"])


def test_a_module_that_raises_on_import_is_named_with_its_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    # a distribution whose module raises: a .dist-info with a RECORD naming the module
    site = tmp_path / "site"
    (site / "brokenmod").mkdir(parents=True)
    (site / "brokenmod" / "__init__.py").write_text("raise ImportError('undefined symbol: _ZN3c10')\n")
    info = site / "brokenmod-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenmod\nVersion: 1.0\n")
    (info / "RECORD").write_text("brokenmod/__init__.py,,\nbrokenmod-1.0.dist-info/METADATA,,\n")
    (info / "top_level.txt").write_text("brokenmod\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    with pytest.raises(TestFailed, match="brokenmod: ImportError: undefined symbol: _ZN3c10"):
        run(tmp_path / "w", promised=["brokenmod"])


def test_another_torch_than_the_parents_fails(tmp_path: Path) -> None:
    # the venv has no torch; the parent promised one
    with pytest.raises(TestFailed, match="has torch None, its parent 2.13.0"):
        run(tmp_path, torch="2.13.0")


def test_an_image_over_its_budget_fails(tmp_path: Path) -> None:
    with pytest.raises(TestFailed, match="is 12 MB, over its budget of 10 MB"):
        run(tmp_path, HostEngine(size=12_000_000))


def test_a_failing_smoke_command_fails_and_a_passing_one_keeps_its_last_lines(
        tmp_path: Path) -> None:
    with pytest.raises(TestFailed, match="the smoke command failed"):
        run(tmp_path, command="echo about to fail; exit 3")
    lines = "; ".join(f"echo line{i}" for i in range(OUTPUT_LINES + 5))
    result = run(tmp_path / "again", command=lines)
    assert result.output == [f"line{i}" for i in range(5, OUTPUT_LINES + 5)]


def test_a_script_that_prints_no_result_fails_with_its_exit(tmp_path: Path) -> None:
    class NoPython(HostEngine):
        def run_script(self, image, argv, **kw):  # type: ignore[no-untyped-def, override]
            files = {**kw.pop("files"), "smoke.py": "import sys; sys.exit(7)\n"}
            return super().run_script(image, argv, files=files, **kw)

    with pytest.raises(TestFailed, match=r"the smoke test of image api on p1 failed \(exit 7\)"):
        run(tmp_path, NoPython())
