"""recipes/*.toml: the shipped recipes are valid, and malformed ones are clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from basefactory.plumbing.errors import ConfigError
from basefactory.wheels.recipe import DEFAULT_EXCLUDES, load_recipe, load_recipes

ROOT = Path(__file__).resolve().parents[2]
SHA = "a" * 64
COMMIT = "b" * 40

GOOD = f"""
[source]
sdist = "demo==1.0"
sha256 = "{SHA}"
[test]
command = "python -c 'import demo'"
"""


def write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_recipes_are_valid() -> None:
    recipes = load_recipes(ROOT / "recipes", exclude=["vllm-source", "index-tts-source"])
    assert {"torchsort", "monotonic-alignment-search", "vllm", "vllm-source", "index-tts",
            "index-tts-source", "indextts-bigvgan-kernel", "openai-whisper", "coqui-tts"
            } <= set(recipes)
    vllm = recipes["vllm-source"]
    assert vllm.requires_cuda and vllm.source and vllm.source.sdist and vllm.build.no_build_isolation
    assert "python use_existing_torch.py" in vllm.build.pre_build
    assert vllm.build.env["VLLM_TARGET_DEVICE"] == "cuda"
    assert not vllm.applies_to("cpu", has_cuda=False) and vllm.applies_to("gpu", has_cuda=True)
    assert recipes["torchsort"].distribution == "torchsort"
    assert recipes["openai-whisper"].pure
    # Index-TTS: PyPI's wheel adopted with its two patches, each file present and a diff
    itts = recipes["index-tts"]
    assert itts.adopt is not None and itts.pure and len(itts.adopt.patches) == 2
    for p in itts.adopt.patches:
        assert "+++ b/indextts/" in (ROOT / "recipes" / p.file).read_text()
    kernel = recipes["indextts-bigvgan-kernel"]
    assert kernel.requires_cuda and kernel.build.env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    assert itts.adopt.sha256 in kernel.build.pre_build[0]  # the kernel is built from that wheel


def test_excludes_always_cover_torch_and_cuda(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD + '\n[build]\nexclude = ["libfoo.so*"]\n'
                               .replace("[build]", "[build]")))
    for lib in ("libtorch*.so*", "libc10*.so*", "libcudart*.so*", "libnvrtc*.so*"):
        assert lib in recipe.excludes
    assert recipe.excludes[-1] == "libfoo.so*"
    assert set(DEFAULT_EXCLUDES) <= set(recipe.excludes)


def test_platform_globs(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, 'platforms = ["cpu-*"]\n' + GOOD))
    assert recipe.applies_to("cpu-py311", has_cuda=False)
    assert not recipe.applies_to("cu130-py311", has_cuda=True)


BAD: list[tuple[str, str, str]] = [
    ("no-source", "[test]\ncommand = 'x'\n", "source"),
    ("no-test", f"[source]\nsdist = 'demo==1'\nsha256 = '{SHA}'\n", "test"),
    ("two-sources", GOOD.replace('sdist = "demo==1.0"', f'sdist = "demo==1.0"\ngit = "https://x/y"\ncommit = "{COMMIT}"'),
     "exactly one of"),
    ("sdist-unpinned-version", GOOD.replace("demo==1.0", "demo>=1.0"), "must pin one version"),
    ("sdist-no-sha", GOOD.replace(f'sha256 = "{SHA}"', ""), "sha256"),
    ("sha-short", GOOD.replace(SHA, "abc"), "source.sha256"),
    ("sha-upper", GOOD.replace(SHA, "A" * 64), "source.sha256"),
    ("git-no-commit", "project='x'\n[source]\ngit = 'https://github.com/a/b'\n[test]\ncommand='x'\n",
     "commit"),
    ("git-short-commit", "project='x'\n[source]\ngit = 'https://github.com/a/b'\ncommit = 'abc1234'\n[test]\ncommand='x'\n",
     "source.commit"),
    ("git-bad-url", f"project='x'\n[source]\ngit = 'github.com/a/b'\ncommit = '{COMMIT}'\n[test]\ncommand='x'\n",
     "not a git URL"),
    ("git-no-project", f"[source]\ngit = 'https://github.com/a/b'\ncommit = '{COMMIT}'\n[test]\ncommand='x'\n",
     "project"),
    ("commit-without-git", GOOD.replace("[test]", f"commit = '{COMMIT}'\n[test]"), "git source"),
    ("empty-command", GOOD.replace("python -c 'import demo'", ""), "test.command"),
    ("unknown-key", "requires_gpu = true\n" + GOOD, "requires_cuda"),
    ("unknown-build-key", GOOD + "[build]\nisolation = false\n", "build.isolation"),
    ("requires-with-isolation", GOOD + "[build]\nrequires = ['cython']\n", "no_build_isolation"),
    ("bad-build-requirement", GOOD + "[build]\nno_build_isolation = true\nrequires = ['cy thon >']\n",
     "not a requirement"),
    ("bad-env-name", GOOD + "[build.env]\n'MAX-JOBS' = '2'\n", "environment variable"),
    ("env-not-string", GOOD + "[build.env]\nMAX_JOBS = 2\n", "build.env.MAX_JOBS"),
    ("bad-apt", GOOD + "[build]\napt = ['Lib Foo']\n", "Debian package"),
    ("name-mismatch", "name = 'other'\n" + GOOD, "differs from the file name"),
    ("project-differs", "project = 'other'\n" + GOOD, "differs from the sdist"),
    ("toml-error", "[source\n", "TOML syntax error"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD], ids=[i for i, _, _ in BAD])
def test_malformed_recipe(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value), str(info.value)


def test_two_recipes_for_one_distribution(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.toml")
    write(tmp_path, GOOD, "b.toml")
    with pytest.raises(ConfigError, match="both make demo"):
        load_recipes(tmp_path)


def test_unknown_recipe_name(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "demo.toml")
    with pytest.raises(ConfigError, match="no recipe nope"):
        load_recipes(tmp_path, ["nope"])


@pytest.mark.parametrize("command", ["false && true", "true\nfalse\ntrue", "exit 3"])
def test_a_failing_test_command_fails_its_script(command: str) -> None:
    """The recipe test and smoke scripts run `set -e`; sh ignores a failure inside
    `a && b` unless wrapped (found when `vllm --version && ...` failed and passed)."""
    import subprocess

    from basefactory.wheels.test import subshell

    script = f"set -e\n{subshell(command)}\necho passed\n"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "passed" not in result.stdout
    # unwrapped, the first case is the bug: the script goes on and passes
    if "&&" in command:
        assert "passed" in subprocess.run(["sh", "-c", f"set -e\n{command}\necho passed\n"],
                                          capture_output=True, text=True).stdout
