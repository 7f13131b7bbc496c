"""Fit tests for real: every published image of the test platform (and its base and slim)
with every tested wheel of its indexes, each installed in a fresh container as users
would. The catalog calls a pair compatible only on such a record; here each verdict is
checked against an independent install, and a real dependency conflict is named."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from basefactory.catalog import views
from basefactory.catalog.snapshot import Reader
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all as build_images
from basefactory.pipeline import Step, fit_published
from basefactory.session import Session
from basefactory.wheels.publish import build_all as build_wheels
from tests.helpers import PLATFORM, write_pyproject

MODULES = {"torchsort": "torchsort", "monotonic-alignment-search": "monotonic_alignment_search",
           "openai-whisper": "whisper"}
TORCH_NEEDING = ("torchsort", "openai-whisper", "monotonic-alignment-search")


def matrix(session: Session) -> dict[str, dict[str, dict[str, Any]]]:
    """image -> wheel -> cell, as the catalog shows it."""
    reader = Reader(session.factory)
    try:
        m = views.matrix(reader.read(), PLATFORM)
    finally:
        reader.close()
    return {r["image"]: {c["wheel"]: c for c in r["cells"]} for r in m["rows"]}


def test_every_pair_of_the_platform_has_a_verdict(session: Session, fitted: list[Step]) -> None:
    assert fitted and {s.kind for s in fitted} == {"fit"}
    assert {s.result for s in fitted} <= {"fits", "does not fit", "current"}
    cells = matrix(session)
    assert {"base", "slim", "api-lean", "cuda-deps", "tts-deps", "stt-deps"} <= set(cells)
    for image, row in cells.items():
        assert set(TORCH_NEEDING) <= set(row), (image, sorted(row))
        for wheel, cell in row.items():
            assert cell["fits"] is not None, (image, wheel, cell["reason"])
    # what the images ship is proven by their smoke tests, not tested again
    assert cells["tts-deps"]["monotonic-alignment-search"]["included"] is True
    assert cells["stt-deps"]["openai-whisper"]["included"] is True
    assert not any(s.name in ("monotonic-alignment-search -> tts-deps",
                              "openai-whisper -> stt-deps") for s in fitted)


def test_torch_needing_wheels_do_not_fit_the_torch_less_tier(session: Session,
                                                              fitted: list[Step]) -> None:
    cells = matrix(session)
    for image in ("api-lean", "slim"):
        for wheel in TORCH_NEEDING:
            cell = cells[image][wheel]
            assert cell["fits"] is False, (image, wheel, cell)
            # a wheel that declares torch pulls it in; one that does not fails to import
            assert (re.fullmatch(r"adds torch \(\d+(\.\d)? MB( download)?\) to an image without torch",
                                 cell["reason"])
                    or "No module named 'torch'" in cell["reason"]), (image, wheel, cell)
    whisper = cells["api-lean"]["openai-whisper"]
    assert whisper["adds"]["mb"] > 150  # torch's CPU build alone is ~700 MB installed
    assert any(p["name"] == "torch" for p in whisper["adds"]["packages"])


RECHECK = """set -e
pip freeze --all > /tmp/freeze-before
python /t/torch_state.py > /tmp/torch-before
pip install -q --index-url {index} '{wheel}=={version}'
pip freeze --all > /tmp/freeze-after
python /t/torch_state.py > /tmp/torch-after
cmp /tmp/torch-before /tmp/torch-after
python - <<'PY'
before = set(open("/tmp/freeze-before").read().split())
after = set(open("/tmp/freeze-after").read().split())
assert not before - after, f"replaced or removed: {{sorted(before - after)}}"
print("added:", sorted(after - before))
PY
sh /t/test-{n}.sh
python /t/abi.py --dist {wheel}
"""


def test_what_fits_installs_and_passes_when_checked_independently(
        session: Session, fitted: list[Step], tmp_path: Path) -> None:
    """Every pair the catalog calls compatible, included pairs too, installed again in a
    fresh container of that image build, apart from the fit machinery: nothing the image
    had is replaced (`pip freeze` before and after), torch's files are unchanged, the
    recipe's own test passes, and the ABI audit of the wheel's distribution finds no
    module that fails beyond what the image and the recipe allow."""
    from basefactory.audit.abi import SCRIPT, parse
    from basefactory.images.definition import load_factory_images
    from basefactory.wheels.recipe import factory_recipes
    from basefactory.wheels.test import TORCH_STATE_SCRIPT

    index = session.devpi.simple_url(f"{session.factory.config.index.user}/{PLATFORM}")
    recipes = {r.distribution: r for r in factory_recipes(session.factory).values()}
    images = load_factory_images(session.factory)
    shutil.copy2(TORCH_STATE_SCRIPT, tmp_path / "torch_state.py")
    shutil.copy2(SCRIPT, tmp_path / "abi.py")
    pairs = [(image, wheel, cell) for image, row in matrix(session).items()
             for wheel, cell in row.items() if cell["fits"] is True]

    def recheck(n: int, image: str, wheel: str, cell: dict[str, Any]) -> None:
        recipe = recipes[wheel]
        (tmp_path / f"test-{n}.sh").write_text(recipe.test.command + "\n")
        out = subprocess.run(
            ["/usr/bin/docker", "run", "--rm", "--network", "host", "-v", f"{tmp_path}:/t:ro",
             cell_ref(session, image), "sh", "-c",
             RECHECK.format(index=index, wheel=wheel, version=cell["version"], n=n)],
            capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (image, wheel, out.stdout[-2000:], out.stderr[-2000:])
        report = parse(out.stdout)
        assert report is not None, out.stdout[-2000:]
        allow = [*(images[image].audit.allow if image in images else ()), *recipe.audit.allow]
        assert report.allowing(allow).passed, (image, wheel, report.failures)

    # two containers at a time: each is mostly pip waiting on the index and the disk
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(recheck, n, *pair) for n, pair in enumerate(pairs)]:
            done.result()
    checked, included = len(pairs), sum(bool(cell["included"]) for _, _, cell in pairs)
    # torchsort, MAS and whisper into base and cuda-deps at least; MAS ships in tts-deps
    assert checked >= 4 and included >= 1, (checked, included)


def cell_ref(session: Session, image: str) -> str:
    repo = f"{session.factory.config.registry.namespace}/{image}"
    digest = session.registry.digest(repo, PLATFORM)
    assert digest is not None
    return f"{session.factory.config.registry.address}/{repo}@{digest}"


def test_a_second_run_tests_nothing_again(session: Session, fitted: list[Step]) -> None:
    again = fit_published(session, jobs=2)
    assert len(again) == len(fitted)
    assert {s.result for s in again} == {"current"}, [s for s in again if s.result != "current"]


def _needs_numpy2(root: Path) -> None:
    (root / "needs_numpy2").mkdir(parents=True)
    (root / "needs_numpy2" / "__init__.py").write_text(
        "import numpy\nassert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__\n")
    write_pyproject(root, "needs-numpy2", "1.0", dependencies=["numpy>=2"],
                    packages=["needs_numpy2"])


def test_an_image_whose_numpy_is_older_than_a_wheel_needs_does_not_fit_it(
        session: Session, published: dict[str, ImageResult], fitted: list[Step],
        tmp_path: Path) -> None:
    """A real conflict: a wheel that requires numpy>=2, and an image that pins numpy 1.26.
    pip would replace the image's numpy; the fit test says so, and so does the catalog."""
    _needs_numpy2(tmp_path / "src")
    recipe = session.factory.recipes_dir / "needs-numpy2.toml"
    recipe.write_text(textwrap.dedent(f"""
        project = "needs-numpy2"
        pure = true
        [source]
        path = "{tmp_path / 'src'}"
        [test]
        command = "python -c 'import needs_numpy2'"
    """))
    folder = session.factory.images_dir / "old-numpy"
    folder.mkdir()
    # on slim: numpy's own vendored OpenBLAS is audited there without torch's help
    (folder / "image.toml").write_text('parent = "slim"\nsize_budget_mb = 3000\n')
    (folder / "requirements.in").write_text("numpy==1.26.4\n")
    try:
        build_wheels(session, ["needs-numpy2"])
        build_images(session, ["old-numpy"])
        steps = fit_published(session, image_names=["old-numpy"], jobs=2)
        (step,) = [s for s in steps if s.name == "needs-numpy2 -> old-numpy"]
        assert step.result == "does not fit"
        assert re.fullmatch(r"replaces numpy 1\.26\.4 -> 2\.\d+\.\d+", step.reason), step.reason
        cell = matrix(session)["old-numpy"]["needs-numpy2"]
        assert cell["fits"] is False and cell["reason"] == step.reason
        assert cell["proven_by"]["fit"].startswith("http")
        # the control: the same wheel goes into an image whose numpy is new enough
        (control,) = [s for s in fit_published(session, image_names=["cuda-deps"])
                      if s.name == "needs-numpy2 -> cuda-deps"]
        assert control.result == "fits", control
    finally:
        recipe.unlink()
        shutil.rmtree(folder)

