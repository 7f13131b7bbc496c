"""Adopted (prebuilt) wheels: tags checked against the platform, overrides applied only
where declared, anything that would replace the platform's torch refused."""

from __future__ import annotations

import base64
import hashlib
import textwrap
import zipfile
from pathlib import Path

import pytest

from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing.errors import BuildError, ConfigError
from basefactory.wheels.adopt import adopt, apply_overrides, check_tags
from basefactory.wheels.patch import patch_records
from basefactory.wheels.recipe import load_recipe, load_recipes
from basefactory.wheels.relabel import headers

ROOT = Path(__file__).resolve().parents[2]
SHA = "c" * 64
FP = Fingerprint(
    platform="cu130-py311-torch2.14", base_image="b", base_digest="sha256:" + "0" * 64,
    python="3.11.2", python_tag="cp311", torch="2.14.1+cu130", cuda="13.0", cxx11_abi=True,
    glibc="2.36", arch="x86_64", probed_at="now",
    distributions={"torch": "2.14.1", "triton": "3.8.0", "filelock": "4.2.12"},
)
REQUIRES = ["numpy", "torch==2.14.0", "torchaudio==2.11.0", "filelock>=3.20.3",
            'six>=1.16.0; python_version > "3.11"', 'triton==3.9.0; platform_machine == "aarch64"',
            'pytest; extra == "test"']


def recipe_file(tmp_path: Path, overrides: str = "", wheel: str | None = None) -> Path:
    wheel = wheel or "demo-1.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    path = tmp_path / "demo.toml"
    path.write_text(textwrap.dedent(f"""
        requires_cuda = true
        [adopt]
        wheel = "{wheel}"
        sha256 = "{SHA}"
        {overrides}
        [test]
        command = "python -c 'import demo'"
    """))
    return path


TORCH_OVERRIDE = """
        [[adopt.overrides]]
        requirement = "torch==2.14.0"
        replace = "torch==2.14.1"
        reason = "a patch release of the torch it was built with"
"""


def test_supported_and_unsupported_tags() -> None:
    for good in ("demo-1.0-cp38-abi3-manylinux_2_28_x86_64.whl",
                 "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "demo-1.0-py3-none-any.whl", "demo-1.0-cp311-cp311-manylinux_2_36_x86_64.whl"):
        check_tags(good, FP)
    for bad, why in (("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl", "CPython 3.11"),
                     ("demo-1.0-cp38-abi3-manylinux_2_38_x86_64.whl", "glibc 2.36"),
                     ("demo-1.0-cp38-abi3-manylinux_2_28_aarch64.whl", "x86_64"),
                     ("demo-1.0-cp311-cp311-win_amd64.whl", "win_amd64")):
        with pytest.raises(BuildError, match=why):
            check_tags(bad, FP)


def test_a_torch_pin_other_than_the_platforms_is_refused_naming_the_override(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_file(tmp_path))
    with pytest.raises(BuildError) as err:
        apply_overrides(recipe, REQUIRES, FP)
    assert "requires torch==2.14.0" in err.value.message
    assert "ships torch 2.14.1" in err.value.message
    assert 'requirement = "torch==2.14.0", replace = "torch==2.14.1"' in (err.value.hint or "")


def test_overrides_replace_and_drop_and_markers_are_evaluated(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_file(tmp_path, TORCH_OVERRIDE + """
        [[adopt.overrides]]
        requirement = "torchaudio==2.11.0"
        reason = "built for torch 2.11, does not load with 2.14"
    """))
    requires, applied = apply_overrides(recipe, REQUIRES, FP)
    assert "torch==2.14.1" in requires and "torch==2.14.0" not in requires
    assert not any(r.startswith("torchaudio") for r in requires)
    # untouched: the aarch64-only triton pin does not apply on x86_64, extras stay
    assert 'triton==3.9.0; platform_machine == "aarch64"' in requires
    assert [a["requirement"] for a in applied] == ["torch==2.14.0", "torchaudio==2.11.0"]
    assert applied[1]["replace"] is None and "2.11" in applied[1]["reason"]


def test_an_override_matching_nothing_is_a_config_error(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_file(tmp_path, TORCH_OVERRIDE.replace("torch==2.14.0", "torch==2.13.0")))
    with pytest.raises(ConfigError, match=r"adopt.overrides\[0\].requirement: .* declares no"):
        apply_overrides(recipe, REQUIRES, FP)


def test_a_requirement_on_other_base_packages_is_checked_too(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_file(tmp_path, TORCH_OVERRIDE))
    with pytest.raises(BuildError, match="ships filelock 4.2.12"):
        apply_overrides(recipe, ["torch==2.14.0", "filelock<4"], FP)


def test_adopt_rewrites_requires_dist_and_relabels(tmp_path: Path) -> None:
    name = "demo-1.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel, "w") as zf:
        meta = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n" + "".join(
            f"Requires-Dist: {r}\n" for r in REQUIRES) + "\nthe description\n"
        zf.writestr("demo/__init__.py", "")
        zf.writestr("demo-1.0.dist-info/METADATA", meta)
        zf.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: cp38-abi3-manylinux_2_28_x86_64\n")
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    recipe = load_recipe(recipe_file(tmp_path, TORCH_OVERRIDE, wheel=name))
    out = tmp_path / "out"
    out.mkdir()
    adopted = adopt(recipe, wheel, FP, out, tag="1795417731.0123456789ab", label="pt214cu130",
                    recipes_dir=tmp_path)
    assert adopted.name == "demo-1.0+pt214cu130-1795417731.0123456789ab-cp38-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(adopted) as zf:
        meta = zf.read("demo-1.0+pt214cu130.dist-info/METADATA")
    assert headers(meta, "Requires-Dist")[:2] == ["numpy", "torch==2.14.1"]
    assert len(headers(meta, "Requires-Dist")) == len(REQUIRES)
    assert meta.decode().endswith("\nthe description\n")


PATCH = """\
--- a/demo/__init__.py
+++ b/demo/__init__.py
@@ -1,2 +1,2 @@
 # demo
-BROKEN = True
+BROKEN = False
"""


def patched_recipe(tmp_path: Path, diff: str) -> tuple[Path, Path]:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo/__init__.py", "# demo\nBROKEN = True\n")
        zf.writestr("demo/other.py", "untouched = 1\n")
        zf.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n")
        zf.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "fix.patch").write_text(diff)
    path = recipe_file(tmp_path, '[[adopt.patches]]\nfile = "patches/fix.patch"\n'
                       'reason = "the shipped flag is wrong"\n', wheel=wheel.name)
    return wheel, path


def test_a_declared_patch_changes_that_file_only_and_its_record(tmp_path: Path) -> None:
    wheel, path = patched_recipe(tmp_path, PATCH)
    recipe = load_recipe(path)
    out = tmp_path / "out"
    out.mkdir()
    adopted = adopt(recipe, wheel, FP, out, tag="1795417731.0123456789ab", label=None,
                    recipes_dir=tmp_path)
    with zipfile.ZipFile(adopted) as zf:
        assert zf.read("demo/__init__.py") == b"# demo\nBROKEN = False\n"
        assert zf.read("demo/other.py") == b"untouched = 1\n"
        record = zf.read("demo-1.0.dist-info/RECORD").decode()
    # pip checks each file against RECORD: the patched file's hash is the new content's
    want = base64.urlsafe_b64encode(hashlib.sha256(b"# demo\nBROKEN = False\n").digest())
    assert "demo/__init__.py,sha256=" + want.rstrip(b"=").decode() + ",22" in record
    [rec] = patch_records(recipe, tmp_path)
    assert rec["files"] == ["demo/__init__.py"] and rec["reason"] == "the shipped flag is wrong"


def test_a_patch_that_does_not_apply_exactly_builds_nothing(tmp_path: Path) -> None:
    wheel, path = patched_recipe(tmp_path, PATCH.replace("-BROKEN = True", "-BROKEN = 1"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=r"adopt.patches\[0\] \(patches/fix.patch\) does not apply"):
        adopt(load_recipe(path), wheel, FP, out, tag="1795417731.0123456789ab", label=None,
              recipes_dir=tmp_path)
    assert list(out.iterdir()) == []


def test_a_missing_or_empty_patch_names_the_field(tmp_path: Path) -> None:
    wheel, path = patched_recipe(tmp_path, "not a diff\n")
    with pytest.raises(ConfigError, match=r"adopt.patches\[0\].file: .* is not a unified diff"):
        adopt(load_recipe(path), wheel, FP, tmp_path, tag="1.0123456789ab", label=None,
              recipes_dir=tmp_path)
    (tmp_path / "patches" / "fix.patch").unlink()
    with pytest.raises(ConfigError, match=r"adopt.patches\[0\].file: .* does not exist"):
        adopt(load_recipe(path), wheel, FP, tmp_path, tag="1.0123456789ab", label=None,
              recipes_dir=tmp_path)


BAD = [
    ("both", f'[source]\nsdist = "demo==1"\nsha256 = "{SHA}"\n', "exactly one of [source]"),
    ("build", '[build]\nno_build_isolation = true\n', "remove [build]"),
    ("no-reason", '[[adopt.overrides]]\nrequirement = "torch==2.14.0"\n', "reason"),
    ("other-project", '[[adopt.overrides]]\nrequirement = "torch==2.14.0"\nreplace = "numpy"\nreason = "0123456789ab"\n',
     "same project"),
]


@pytest.mark.parametrize(("case", "extra", "needle"), BAD, ids=[b[0] for b in BAD])
def test_malformed_adopt_recipes(tmp_path: Path, case: str, extra: str, needle: str) -> None:
    path = recipe_file(tmp_path)
    text = path.read_text()
    if extra.startswith("[[adopt"):
        text = text.replace("[test]", extra + "[test]")
    else:
        text += extra
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        load_recipe(path)
    assert "demo.toml" in err.value.message


def test_bad_wheel_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="adopt.wheel"):
        load_recipe(recipe_file(tmp_path, wheel="demo.tar.gz"))


def test_shipped_vllm_recipes(tmp_path: Path) -> None:
    recipes = load_recipes(ROOT / "recipes", exclude=["vllm-source", "index-tts-source"])
    adopted, source = recipes["vllm"], recipes["vllm-source"]
    assert adopted.adopt is not None and adopted.distribution == source.distribution == "vllm"
    assert source.source is not None and source.source.sdist == "vllm==0.33.0"
    assert {o.requirement for o in adopted.adopt.overrides} >= {"torch==2.14.0", "torchaudio==2.11.0"}
    # both active at once is refused: one recipe per distribution
    with pytest.raises(ConfigError, match="both make vllm"):
        load_recipes(ROOT / "recipes", exclude=["index-tts-source"])


def test_a_patch_whose_context_differs_is_refused_not_fuzzed_in(tmp_path: Path) -> None:
    # GNU patch's default fuzz would apply this hunk over a context line the wheel does
    # not have: a patch written for other files must not reach a published wheel
    wheel, path = patched_recipe(tmp_path, PATCH.replace(" # demo\n", " # other\n"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match="does not apply"):
        adopt(load_recipe(path), wheel, FP, out, tag="1795417731.0123456789ab", label=None,
              recipes_dir=tmp_path)
