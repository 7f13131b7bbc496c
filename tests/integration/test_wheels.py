"""The wheel factory end to end: real sdists from PyPI (through devpi's mirror), a real
git repository, real compilers, auditwheel, the platform's base, and devpi."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from basefactory.platforms.publish import PlatformResult
from basefactory.plumbing.errors import BuildError, SourceMismatch, TestFailed
from basefactory.proofs import SCHEMA, Kind, store_devpi
from basefactory.refs import common_index, platform_index
from basefactory.session import Session
from basefactory.wheels.publish import build_all, published
from basefactory.wheels.recipe import DEFAULT_EXCLUDES
from tests.helpers import PLATFORM, write_pyproject

COMPILED = ["torchsort", "monotonic-alignment-search"]


@pytest.fixture(scope="module")
def built(session: Session, platform: PlatformResult) -> dict[str, str]:
    results = build_all(session, COMPILED)
    assert {r.recipe for r in results} == set(COMPILED)
    assert all(r.state in ("built", "current") for r in results)
    return {r.recipe: r.wheel or "" for r in results}


def test_compiled_wheels_are_labelled_repaired_and_tested(session: Session,
                                                          built: dict[str, str]) -> None:
    index = platform_index(session.factory, PLATFORM)
    for recipe, filename in built.items():
        assert "+pt213cpu-" in filename, filename  # the platform's local version label
        files = session.devpi.release_files(index, recipe)
        mine = [f for f in files if f.filename == filename]
        assert mine and mine[0].toxresults, f"{filename} has no test record"
        proof = store_devpi.read(session.devpi, mine[0].toxresults[0])
        assert proof.kind == Kind.WHEEL_TEST and proof.passed and proof.schema == SCHEMA
        assert proof.subject.platform == PLATFORM and proof.subject.wheel == filename
        assert proof.subject.wheel_sha256 == mine[0].sha256 == proof.inputs
        # what the test script printed after the install: torch's files as they were
        assert proof.evidence["torch"].startswith("2.13.0+cpu "), proof.evidence
        local = session.factory.wheels_dir / PLATFORM / filename
        with zipfile.ZipFile(local) as zf:
            vendored = [n for n in zf.namelist() if ".libs/" in n]
        import fnmatch
        assert not [v for v in vendored if any(fnmatch.fnmatch(v.rsplit("/", 1)[1], p)
                                                for p in DEFAULT_EXCLUDES)]
        # never in another index
        assert session.devpi.release_files(common_index(session.factory), recipe) == []


def test_second_build_builds_nothing(session: Session, built: dict[str, str]) -> None:
    again = build_all(session, COMPILED)
    assert [r.state for r in again] == ["current"] * len(COMPILED)
    assert {r.recipe: r.wheel for r in again} == built


def test_a_changed_test_reproves_the_published_file_without_rebuilding(
        session: Session, built: dict[str, str]) -> None:
    """A recipe's test is not part of its wheel's inputs: changing it re-tests the file
    already published (same name, same sha256) and attaches a record of the new test;
    `--retest` does the same on demand."""
    path = session.factory.recipes_dir / "torchsort.toml"
    original = path.read_text()
    changed = original.replace('command = """', 'command = """echo retested-by-the-suite && ', 1)
    assert changed != original
    path.write_text(changed)
    try:
        [again] = build_all(session, ["torchsort"])
        assert again.state == "retested" and again.wheel == built["torchsort"], again
        assert "test changed" in again.reason
        files = session.devpi.release_files(platform_index(session.factory, PLATFORM), "torchsort")
        [mine] = [f for f in files if f.filename == built["torchsort"]]
        records = [store_devpi.read(session.devpi, t) for t in mine.toxresults]
        assert any(r.passed and r.evidence["command"].startswith("echo retested-by-the-suite")
                   for r in records)
        [current] = build_all(session, ["torchsort"])
        assert current.state == "current"
        [forced] = build_all(session, ["torchsort"], retest=True)
        assert forced.state == "retested" and forced.reason == "--retest"
    finally:
        path.write_text(original)
    # the recipe's own test again, so later tests find the wheel current
    assert build_all(session, ["torchsort"])[0].state in ("retested", "current")


def test_pip_installs_from_the_index_without_touching_torch(
        session: Session, platform: PlatformResult, built: dict[str, str]) -> None:
    simple = session.devpi.simple_url(platform_index(session.factory, PLATFORM))
    out = session.docker.run(platform.base.ref, ["sh", "-c", (
        "python -c 'import torch; print(\"before\", torch.__version__)' && "
        f"pip install -q --index-url {simple} torchsort && "
        "python -c 'import torch, torchsort, importlib.metadata as md; "
        "print(\"after\", torch.__version__, md.version(\"torchsort\"));"
        "print(torchsort.soft_sort(torch.tensor([[3.0, 1.0, 2.0]]), regularization_strength=0.001))'"
    )], echo=False)
    assert "before 2.13.0+cpu" in out.output
    assert "after 2.13.0+cpu 0.1.10+pt213cpu" in out.output
    assert "tensor([[1., 2., 3.]])" in out.output


# --- the git code path, with a real repository, and failures that must publish nothing ---

C_EXTENSION = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "add"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_fastadd", NULL, -1, methods};
PyMODINIT_FUNC PyInit__fastadd(void) { return PyModule_Create(&mod); }
"""


def make_c_project(folder: Path, *, broken: bool = False) -> Path:
    (folder / "fastadd").mkdir(parents=True)
    (folder / "fastadd" / "__init__.py").write_text("from fastadd._fastadd import add\n")
    source = C_EXTENSION.replace("a + b", "a + b +") if broken else C_EXTENSION
    (folder / "fastadd" / "_fastadd.c").write_text(source)
    write_pyproject(folder, "fastadd", "0.3.0")
    (folder / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(ext_modules=[Extension('fastadd._fastadd', ['fastadd/_fastadd.c'])])\n")
    return folder


def git_repo(folder: Path) -> str:
    make_c_project(folder)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "c extension"]):
        subprocess.run(["git", *args], cwd=folder, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, check=True,
                          capture_output=True, text=True).stdout.strip()


def write_recipe(session: Session, name: str, body: str) -> None:
    (session.factory.recipes_dir / f"{name}.toml").write_text(textwrap.dedent(body))


def write_path_recipe(session: Session, name: str, *, project: str, path: Path,
                      command: str) -> None:
    """A recipe whose source is a local folder, with its test command."""
    (session.factory.recipes_dir / f"{name}.toml").write_text(
        f'project = "{project}"\n[source]\npath = "{path}"\n[test]\ncommand = "{command}"\n')


def refused_build(session: Session, recipe: str) -> subprocess.CompletedProcess[str]:
    """`basefactory wheels build RECIPE` as a user runs it, expected to exit 6 (a test
    failed): its output, to say why."""
    out = subprocess.run([sys.executable, "-m", "basefactory", "--config",
                          str(session.factory.path), "wheels", "build", recipe],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == TestFailed.exit_code, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def no_files(session: Session, project: str) -> bool:
    return session.devpi.release_files(platform_index(session.factory, PLATFORM), project) == []


def test_git_source_builds_a_c_extension(session: Session, platform: PlatformResult,
                                         tmp_path: Path) -> None:
    commit = git_repo(tmp_path / "repo")
    write_recipe(session, "fastadd-git", f"""
        project = "fastadd"
        [source]
        git = "file://{tmp_path / 'repo'}"
        commit = "{commit}"
        [test]
        command = "python -c 'import fastadd; assert fastadd.add(2, 40) == 42; print(42)'"
    """)
    try:
        [result] = build_all(session, ["fastadd-git"])
        assert result.state == "built" and "+pt213cpu-" in (result.wheel or "")
        files = session.devpi.release_files(platform_index(session.factory, PLATFORM), "fastadd")
        assert [f.filename for f in files] == [result.wheel]
        # a commit the repository does not hold: refused before any build
        write_recipe(session, "fastadd-git", f"""
            project = "fastadd"
            [source]
            git = "file://{tmp_path / 'repo'}"
            commit = "{'0' * 40}"
            [test]
            command = "true"
        """)
        with pytest.raises(SourceMismatch, match="does not exist"):
            build_all(session, ["fastadd-git"])
        assert len(session.devpi.release_files(platform_index(session.factory, PLATFORM),
                                               "fastadd")) == 1
    finally:
        (session.factory.recipes_dir / "fastadd-git.toml").unlink()


def test_sha256_mismatch_is_refused_before_building(session: Session,
                                                     platform: PlatformResult) -> None:
    write_recipe(session, "bad-sha", f"""
        [source]
        sdist = "torch-spline-conv==1.2.2"
        sha256 = "{'0' * 64}"
        [test]
        command = "true"
    """)
    try:
        with pytest.raises(SourceMismatch, match="pinned sha256"):
            build_all(session, ["bad-sha"])
        assert no_files(session, "torch-spline-conv")
    finally:
        (session.factory.recipes_dir / "bad-sha.toml").unlink()


def test_failed_build_and_failed_test_publish_nothing(session: Session, platform: PlatformResult,
                                                      tmp_path: Path) -> None:
    make_c_project(tmp_path / "broken", broken=True)
    make_c_project(tmp_path / "ok")
    write_path_recipe(session, "fastadd-broken", project="fastadd-broken-build",
                      path=tmp_path / "broken", command="true")
    write_path_recipe(session, "fastadd-failing-test", project="fastadd", path=tmp_path / "ok",
                      command="python -c 'import fastadd; assert fastadd.add(1, 1) == 3'")
    before = session.devpi.release_files(platform_index(session.factory, PLATFORM), "fastadd")
    try:
        with pytest.raises(BuildError) as build_error:
            build_all(session, ["fastadd-broken"])
        assert "nothing was uploaded" in str(build_error.value)
        assert "error" in str(build_error.value).lower() and "full log:" in str(build_error.value)
        with pytest.raises(TestFailed) as test_error:
            build_all(session, ["fastadd-failing-test"])
        assert "AssertionError" in str(test_error.value)
        assert "nothing was uploaded" in str(test_error.value)
        after = session.devpi.release_files(platform_index(session.factory, PLATFORM), "fastadd")
        assert [f.filename for f in after] == [f.filename for f in before]
    finally:
        for name in ("fastadd-broken", "fastadd-failing-test"):
            (session.factory.recipes_dir / f"{name}.toml").unlink()


def test_published_finds_a_file_by_its_input_digest() -> None:
    from basefactory.adapters.devpi_api import ReleaseFile

    f = ReleaseFile("x", "1+pt213cpu", "x-1+pt213cpu-1795417731.abcdefabcdef-py3-none-any.whl",
                    "u", "s")
    assert published([f], "abcdefabcdef" + "0" * 52) == f
    assert published([f], "0" * 64) is None


def test_a_wheel_whose_install_changes_torch_is_refused(session: Session,
                                                        platform: PlatformResult,
                                                        tmp_path: Path) -> None:
    """A real bad wheel: it ships a file of torch's own (torch/version.py), so installing it
    rewrites torch in place, constraints or not. The wheel test compares torch's files
    before and after: the command exits 6, says torch changed, and nothing is uploaded."""
    src = tmp_path / "clobber"
    (src / "torch_clobber").mkdir(parents=True)
    (src / "torch_clobber" / "__init__.py").write_text("")
    (src / "torch").mkdir()
    (src / "torch" / "version.py").write_text("__version__ = '2.13.0+cpu'\ngit_version = 'x'\n")
    write_pyproject(src, "torch-clobber", "1.0", packages=["torch_clobber", "torch"])
    write_recipe(session, "torch-clobber", f"""
        project = "torch-clobber"
        pure = true
        [source]
        path = "{src}"
        [test]
        command = "true"
    """)
    try:
        out = refused_build(session, "torch-clobber")
        assert "changed torch; nothing was uploaded" in out.stderr, out.stderr[-3000:]
        assert "basefactory: torch changed:" in out.stderr  # before and after, from the test
        assert "Traceback" not in out.stderr
        common = session.devpi.release_files(common_index(session.factory), "torch-clobber")
        assert common == [] and no_files(session, "torch-clobber")
    finally:
        (session.factory.recipes_dir / "torch-clobber.toml").unlink()


def test_a_wheel_whose_module_does_not_load_is_not_uploaded(session: Session,
                                                            platform: PlatformResult,
                                                            tmp_path: Path) -> None:
    """A wheel whose recipe test passes (it never imports the broken module) but one of
    whose extension modules needs a torch symbol this torch lacks: the ABI audit that
    follows the test loads every module, and the upload is refused, naming it."""
    src = make_c_project(tmp_path / "abibreak")
    symbol = "_ZN3c1022this_torch_has_no_suchEv"
    (src / "fastadd" / "_broken.c").write_text(
        f"extern int {symbol}(void);\nint call_it(void) {{ return {symbol}(); }}\n")
    (src / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(ext_modules=[Extension('fastadd._fastadd', ['fastadd/_fastadd.c']),\n"
        "                   Extension('fastadd._broken', ['fastadd/_broken.c'])])\n")
    write_pyproject(src, "fastadd-abi", "0.3.0", packages=["fastadd"])
    write_path_recipe(session, "fastadd-abi", project="fastadd-abi", path=src,
                      command="python -c 'import fastadd; assert fastadd.add(1, 2) == 3'")
    try:
        out = refused_build(session, "fastadd-abi")
        assert "ABI audit" in out.stderr and "nothing was uploaded" in out.stderr, out.stderr
        assert "fastadd/_broken" in out.stderr and symbol in out.stderr, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
        assert no_files(session, "fastadd-abi")
    finally:
        (session.factory.recipes_dir / "fastadd-abi.toml").unlink()
