"""Generated factory.toml, recipes and image definitions sent through the CLI (`config
check`): an invalid one exits 2 with one message naming its file, never a traceback.
Only invalid inputs are counted; over 1,000 of them. It needs no service, so it is a
unit test, marked `slow` (about a minute): `make test-unit` leaves it out, `make test` runs
it."""

from __future__ import annotations

import io
import string
import tempfile
from collections import Counter
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basefactory.cli import main

pytestmark = pytest.mark.slow

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


def check(config: Path, named: str) -> None:
    """`basefactory config check` on it: exit 0 (valid: not counted) or exit 2 with one
    error line that names `named` (the file or folder at fault), and no traceback."""
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["--config", str(config), "config", "check"])
    text = err.getvalue()
    assert code in (0, 2), text
    assert "Traceback" not in text
    if code == 2:
        errors = [line for line in text.splitlines() if line.startswith("basefactory: error:")]
        assert len(errors) == 1 and named in errors[0], text
        _tally("malformed_inputs")


def factory_folder(tmp: str) -> Path:
    """A valid factory (one platform) whose recipes/ and images/ the test fills."""
    root = Path(tmp)
    (root / "recipes").mkdir()
    (root / "images").mkdir()
    (root / "factory.toml").write_text('[platforms.p1.bootstrap]\ntorch = "torch==2.13.0"\n')
    return root / "factory.toml"


@SETTINGS
@given(text=documents)
def test_factory_toml(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "factory.toml"
        path.write_text(text)
        check(path, str(path))


@SETTINGS
@given(data=tables(RECIPE_KEYS))
def test_recipes(data: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = factory_folder(tmp)
        path = config.parent / "recipes" / "fuzz.toml"
        path.write_text(toml_text(data))
        check(config, str(path))


@SETTINGS
@given(data=tables(IMAGE_KEYS), requirements=st.text(max_size=60))
def test_images(data: dict[str, object], requirements: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = factory_folder(tmp)
        folder = config.parent / "images" / "fuzz-image"
        folder.mkdir()
        (folder / "image.toml").write_text(toml_text(data))
        (folder / "requirements.in").write_text(requirements)
        check(config, str(folder))


def test_valid_inputs_pass_the_same_check(tmp_path: Path) -> None:
    """The factory the fuzzers start from, with a valid recipe and image, exits 0: an
    exit 2 above is the generated input's fault."""
    config = factory_folder(str(tmp_path))
    (tmp_path / "recipes" / "six.toml").write_text(
        f'project = "six"\n[source]\nsdist = "six==1.17.0"\nsha256 = "{"a" * 64}"\n'
        '[test]\ncommand = "python -c 1"\n')
    (tmp_path / "images" / "ok").mkdir()
    (tmp_path / "images" / "ok" / "image.toml").write_text('parent = "platform"\nsize_budget_mb = 900\n')
    (tmp_path / "images" / "ok" / "requirements.in").write_text("six\n")
    assert main(["--config", str(config), "config", "check"]) == 0


def _tally(key: str) -> None:
    from tests.reliability.conftest import REPORT

    REPORT[key] += 1


def test_over_a_thousand_inputs_were_tried() -> None:
    from tests.reliability.conftest import REPORT

    assert REPORT["malformed_inputs"] >= 1000, Counter(REPORT)
