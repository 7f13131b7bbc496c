"""What the catalog's reader takes from the registry beside an image (catalog/snapshot.py),
over a stand-in registry; tests/integration/test_zstd.py reads a real copy."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.catalog.snapshot import Reader
from basefactory.images import fit
from basefactory.images.definition import load_images
from basefactory.proofs import Kind, Proof, Subject
from basefactory.refs import zstd_ref, zstd_repository
from basefactory.wheels.recipe import load_recipes
from tests.helpers import ROOT, small_factory


def test_a_zstd_copy_is_offered_only_when_it_is_this_very_build(tmp_path: Path) -> None:
    """The copy's moving tag is shown only when its config is the image's: a copy of
    another build (the copy lagging a publish, or a kill between the two) is not offered
    as this image; and a factory that makes no copies shows none."""
    for zstd in (True, False):
        root = tmp_path / str(zstd)
        root.mkdir()
        factory = small_factory(root, '[registry]\ncompression = ["gzip", "zstd"]\n'
                                if zstd else "")
        manifests: dict[tuple[str, str], SimpleNamespace] = {}
        reader = Reader.__new__(Reader)
        reader.factory = factory
        reader.registry = SimpleNamespace(  # type: ignore[assignment]
            manifest=lambda repo, ref, m=manifests: m.get((repo, ref)))
        copy = (zstd_repository(factory, "tts-deps"), "p1")
        assert reader._zstd("tts-deps", "p1", "sha256:c1") is None  # no copy
        manifests[copy] = SimpleNamespace(config_digest="sha256:another-build")
        assert reader._zstd("tts-deps", "p1", "sha256:c1") is None
        manifests[copy] = SimpleNamespace(config_digest="sha256:c1")
        assert reader._zstd("tts-deps", "p1", "sha256:c1") == (
            zstd_ref(factory, "tts-deps", "p1") if zstd else None)


def test_the_fit_inputs_expected_today_come_from_the_recipes_and_images_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a fit record of (image build, wheel file) must carry to count: the same
    fit_inputs publish computes, from the image's allowances and the wheel's recipe. A
    changed recipe test changes it (the record then reads "not tested as things are now")."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "images", tmp_path / "images")
    factory = small_factory(tmp_path, '[wheels]\nexclude = ["vllm-source", "index-tts-source"]\n')
    reader = Reader.__new__(Reader)
    reader.factory = factory
    reader._expected_at = None
    cell: Any = SimpleNamespace(ref="r/cuda-deps:p1", digest="sha256:d1", wheels={})
    record = Proof.new(Kind.FIT, Subject(platform="p1", wheel="torchsort.whl", image="cuda-deps",
                                         image_digest="sha256:d1"), inputs="old", passed=True,
                       evidence={})
    wheel: Any = SimpleNamespace(project="torchsort", version="0.1.10+pt213cpu",
                                 filename="torchsort.whl", url="u", sha256="s1",
                                 index="factory/p1", platform="p1", proofs=[record])
    # another platform's wheel, and one no fit record names: nothing to expect of either
    elsewhere: Any = SimpleNamespace(**{**wheel.__dict__, "platform": "p2", "sha256": "s2"})
    unrecorded: Any = SimpleNamespace(**{**wheel.__dict__, "sha256": "s3", "proofs": []})
    images = {"cuda-deps": {"p1": cell}}
    expected = reader.fit_expectations(images, [wheel, elsewhere, unrecorded])
    recipes = load_recipes(factory.recipes_dir, exclude=factory.config.wheels.exclude)
    definitions = load_images(factory.images_dir, recipes=set(recipes))
    target = fit.Target("cuda-deps", "p1", cell.ref, cell.digest, {},
                        definitions["cuda-deps"].audit.allow)
    candidate = fit.Candidate(ReleaseFile("torchsort", wheel.version, "torchsort.whl", "u", "s1"),
                              "factory/p1", recipes["torchsort"])
    assert expected == {"sha256:d1 s1": fit.fit_inputs(target, candidate)}  # p2's: not here
    # nothing changed: not computed again (the recipes are not even read)
    monkeypatch.setattr("basefactory.catalog.snapshot.load_recipes", lambda *a, **k: 1 / 0)
    assert reader.fit_expectations(images, [wheel, elsewhere, unrecorded]) is expected
    monkeypatch.undo()
    recipe = tmp_path / "recipes" / "torchsort.toml"
    text = recipe.read_text()
    assert 'print("torchsort soft_rank' in text
    recipe.write_text(text.replace('print("torchsort soft_rank', 'print("now: torchsort soft_rank'))
    assert reader.fit_expectations(images, [wheel]) != expected
    # a changed recipe file alone (same images and wheels) is read again
    again = reader.fit_expectations(images, [wheel, elsewhere])
    recipe.write_text(recipe.read_text().replace('print("now: ', 'print("then: '))
    assert reader.fit_expectations(images, [wheel, elsewhere]) != again
