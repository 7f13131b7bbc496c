"""images/: the shipped definitions are valid; malformed ones are one clear ConfigError."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from basefactory.images.definition import chain, load_images
from basefactory.images.lock import blocks, parse, python_platform
from basefactory.images.plan import needed, walk
from basefactory.plumbing.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"torchsort", "monotonic-alignment-search", "coqui-tts", "openai-whisper", "vllm",
           "index-tts", "indextts-bigvgan-kernel"}


def make(tmp: Path, name: str, toml: str, requirements: str | None = None) -> None:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    (tmp / name / "image.toml").write_text(textwrap.dedent(toml))
    if requirements is not None:
        (tmp / name / "requirements.in").write_text(requirements)


def test_shipped_images_in_parent_order() -> None:
    images = load_images(ROOT / "images", recipes=RECIPES)
    order = list(images)
    assert order.index("cuda-deps") < order.index("tts-deps")
    assert order.index("cuda-deps") < order.index("stt-deps")
    assert images["api-lean"].parent == "slim" and images["api-lean"].budget_for("x") == 150
    assert images["cuda-deps"].budget_for("cpu-py311-torch2.13") == 2500
    assert images["cuda-deps"].budget_for("cu130-py311-torch2.14") == 14000
    assert chain(images, "tts-deps") == ["tts-deps", "cuda-deps"]
    # a named image brings its ancestors, not its children
    assert needed(images, ["tts-deps"]) == ["cuda-deps", "tts-deps"]
    assert needed(images, ["cuda-deps"]) == ["cuda-deps"]
    assert set(needed(images, None)) == set(images)
    # Index-TTS's own image: from the platform (its pins clash with cuda-deps and Coqui's),
    # with files/ in its build context and a template that includes the shared one
    itts = images["indextts-deps"]
    assert itts.parent == "platform" and itts.platforms == ("cu130-py311-torch2.11",)
    assert itts.files is not None and (itts.files / "smoke.py").is_file()
    assert itts.template is not None and "image.Dockerfile.j2" in itts.template.read_text()
    env = images["cuda-deps"].env
    assert env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn" and env["PYTHONUNBUFFERED"] == "1"
    llm = images["llm-deps"]
    assert llm.wheels == ("vllm",) and llm.parent == "platform" and llm.platforms == ("cu130-py311-torch2.14",)
    assert llm.env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"


def test_the_walk_goes_parents_first_and_drops_what_a_platform_lacks(tmp_path: Path) -> None:
    """The one parent walk of `images build` and `publish`: an image that does not apply
    to a platform is left out there with everything built on it."""
    make(tmp_path, "a", 'parent = "platform"\nsize_budget_mb = 1\n')
    make(tmp_path, "b", 'parent = "a"\nsize_budget_mb = 1\nplatforms = ["cu*"]\n')
    make(tmp_path, "c", 'parent = "b"\nsize_budget_mb = 1\n')
    make(tmp_path, "d", 'parent = "slim"\nsize_budget_mb = 1\n')
    images = load_images(tmp_path, recipes=set())

    def names(found: list) -> list[str]:  # type: ignore[type-arg]
        return [i.name for i in found]

    assert names(walk(images, None, "cu130")) == ["a", "b", "c", "d"]
    assert names(walk(images, None, "cpu-x")) == ["a", "d"]
    assert names(walk(images, ["c"], "cu130")) == ["a", "b", "c"]
    assert names(walk(images, ["c"], "cpu-x")) == ["a"]
    assert names(walk(images, ["d"], "cpu-x")) == ["d"]


BAD = [
    ("cycle", [("a", 'parent = "b"\nsize_budget_mb = 1\n'), ("b", 'parent = "a"\nsize_budget_mb = 1\n')],
     "cycle: a -> b -> a"),
    ("unknown-parent", [("a", 'parent = "nope"\nsize_budget_mb = 1\n')], "no image `nope`"),
    ("unknown-recipe", [("a", 'wheels = ["nope"]\nsize_budget_mb = 1\n')], "no recipe `nope`"),
    ("missing-budget", [("a", 'parent = "platform"\n')], "size_budget_mb"),
    ("negative-budget", [("a", "size_budget_mb = -5\n")], "size_budget_mb"),
    ("unknown-key", [("a", "size_budget_mb = 1\nparents = 'x'\n")], "parents"),
    ("bad-apt", [("a", "size_budget_mb = 1\napt = ['FFmpeg!']\n")], "Debian package"),
    ("bad-import", [("a", "size_budget_mb = 1\n[smoke]\nimports = ['not a module']\n")],
     "smoke.imports"),
    ("name-given", [("a", "name = 'b'\nsize_budget_mb = 1\n")], "remove it"),
    ("toml-error", [("a", "size_budget_mb = \n")], "TOML syntax error"),
]


@pytest.mark.parametrize(("defs", "expected"), [(d, e) for _, d, e in BAD], ids=[i for i, _, _ in BAD])
def test_malformed_images(tmp_path: Path, defs: list[tuple[str, str]], expected: str) -> None:
    for name, toml in defs:
        make(tmp_path, name, toml)
    with pytest.raises(ConfigError) as info:
        load_images(tmp_path, recipes=RECIPES)
    assert expected in str(info.value), str(info.value)


@pytest.mark.parametrize(("line", "expected"), [
    ("numpy >=>= 1", "is not a requirement"),
    ("-r other.txt", "options are not supported"),
    ("pkg @ https://example.com/pkg.whl", "direct URLs"),
])
def test_bad_requirement_names_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    make(tmp_path, "a", "size_budget_mb = 1\n", f"# comment\nnumpy\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_images(tmp_path, recipes=RECIPES)
    assert "requirements.in:3" in str(info.value) and expected in str(info.value)


def test_lock_parsing_keeps_hashes() -> None:
    text = ("numpy==2.4.6 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            "Jinja2==3.1.6 \\\n    --hash=sha256:cc\n")
    assert parse(text) == {"numpy": "2.4.6", "jinja2": "3.1.6"}
    assert blocks(text, {"numpy"}) == "numpy==2.4.6 --hash=sha256:aa --hash=sha256:bb\n"
    assert python_platform("x86_64", "2.36") == "x86_64-manylinux_2_36"


def test_the_lock_label_keeps_versions_not_hashes() -> None:
    from basefactory.images.lock import lock_versions

    text = ("# basefactory lock\n# comment\nnumpy==2.3.5 --hash=sha256:aa --hash=sha256:bb\n\n"
            "six==1.17.0 --hash=sha256:cc\n")
    assert lock_versions(text) == "numpy==2.3.5\nsix==1.17.0\n"
    # the shipped llm-deps lock (350 KB with hashes) fits in one label
    lock = (ROOT / "images" / "llm-deps" / "locks" / "cu130-py311-torch2.14.txt").read_text()
    assert len(lock) > 131072 > len(lock_versions(lock).encode()) and "vllm" not in lock_versions(lock)


def test_a_template_may_include_the_shared_one_and_add_steps() -> None:
    from basefactory.images.plan import render

    image = load_images(ROOT / "images", recipes=RECIPES)["indextts-deps"]
    text = render(image, "reg/base:p", has_lock=True, has_wheels=True)
    assert text.startswith("FROM reg/base:p\n")
    # the shared template's steps, then the image's own, in that order
    assert text.index("-r /tmp/basefactory/wheels.txt") < text.index("TextNormalizer") \
        < text.index("COPY files/ /opt/indextts/")
