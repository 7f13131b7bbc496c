"""Generated malformed factory.toml, recipes and image definitions: each is a clean
ConfigError (exit 2 through the CLI), never a traceback. Over 1,000 inputs in all."""

from __future__ import annotations

import io
import string
import tempfile
from collections import Counter
from contextlib import redirect_stderr
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basefactory.cli import main
from basefactory.images.definition import load_images
from basefactory.plumbing.errors import ConfigError
from basefactory.wheels.recipe import load_recipe

KEYS = ["state_dir", "index", "registry", "engine", "platforms", "wheels", "catalog", "port",
        "host", "url", "embedded", "bootstrap", "torch", "image", "suite", "python", "apt",
        "env", "wheelhouse", "exclude", "description", "enabled", "namespace", "x", "Port"]
RECIPE_KEYS = ["source", "sdist", "sha256", "git", "commit", "path", "build", "test", "command",
               "requires", "no_build_isolation", "env", "pre_build", "apt", "exclude",
               "project", "pure", "requires_cuda", "base_requires", "platforms", "name"]
IMAGE_KEYS = ["parent", "wheels", "apt", "env", "platforms", "size_budget_mb", "smoke",
              "imports", "command", "description", "name"]

scalar = st.one_of(
    st.integers(-70000, 70000), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=string.printable, max_size=30), st.just("torch==2.13.0+cpu"),
    st.just("http://127.0.0.1:1"), st.just("a" * 64), st.just("b" * 40),
    st.lists(st.text(max_size=8), max_size=3),
)


def tables(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.recursive(
        st.dictionaries(st.sampled_from(keys), scalar, max_size=5),
        lambda inner: st.dictionaries(st.sampled_from(keys), st.one_of(scalar, inner),
                                      max_size=5),
        max_leaves=12,
    )


def toml_text(data: object, prefix: str = "") -> str:
    """A rough TOML writer (inline tables for nesting); also fed raw text below."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        return '""'
    assert isinstance(data, dict)
    return "".join(f'"{k}" = {value(v)}\n' for k, v in data.items())


documents = st.one_of(tables(KEYS).map(toml_text),
                      st.text(alphabet=string.printable + "[]=\"'", max_size=200))
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@SETTINGS
@given(text=documents)
def test_factory_toml(text: str) -> None:
    _tally("malformed_inputs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "factory.toml"
        path.write_text(text)
        err = io.StringIO()
        with redirect_stderr(err):
            code = main(["--config", str(path), "config", "check"])
        assert code in (0, 2), err.getvalue()
        assert "Traceback" not in err.getvalue()
        if code == 2:
            assert str(path) in err.getvalue()


@SETTINGS
@given(data=tables(RECIPE_KEYS))
def test_recipes(data: dict[str, object]) -> None:
    _tally("malformed_inputs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(toml_text(data))
        try:
            load_recipe(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


@SETTINGS
@given(data=tables(IMAGE_KEYS), requirements=st.text(max_size=60))
def test_images(data: dict[str, object], requirements: str) -> None:
    _tally("malformed_inputs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fuzz-image"
        folder.mkdir()
        (folder / "image.toml").write_text(toml_text(data))
        (folder / "requirements.in").write_text(requirements)
        try:
            load_images(Path(tmp), recipes={"torchsort"})
        except ConfigError as exc:
            assert "fuzz-image" in str(exc) or tmp in str(exc)


def _tally(key: str) -> None:
    from tests.reliability.conftest import REPORT

    REPORT[key] += 1


def test_over_a_thousand_inputs_were_tried() -> None:
    from tests.reliability.conftest import REPORT

    assert REPORT["malformed_inputs"] >= 1000, Counter(REPORT)
