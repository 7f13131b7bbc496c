"""The rules of a fit test, from the record fit_script.py writes in the container: each
rule has an input that breaks it and is named in the reason. The script itself runs for
real here too, in a venv of this Python with a local index of wheels."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.audit.allow import AllowedModule
from basefactory.images import fit
from basefactory.proofs import Kind, Proof, Subject
from tests.helpers import small_factory

TORCH = ["torch 2.13.0+cpu 1200 abc"]


def record(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "spec": "torchsort==0.1.10+pt213cpu",
        "before": {"torch": {"version": "2.13.0+cpu", "size": 700_000_000},
                   "numpy": {"version": "1.26.4", "size": 40_000_000}},
        "after": {"torch": {"version": "2.13.0+cpu", "size": 700_000_000},
                  "numpy": {"version": "1.26.4", "size": 40_000_000},
                  "torchsort": {"version": "0.1.10+pt213cpu", "size": 2_500_000}},
        "torch_before": TORCH, "torch_after": TORCH,
        "install": {"rc": 0, "tail": ["Successfully installed torchsort-0.1.10+pt213cpu"]},
        "test": {"rc": 0, "tail": ["ok"]},
        "abi": {"modules": 2, "failures": [], "host_provided": [], "python": "3.11.2"},
    }
    base.update(copy.deepcopy(change))
    return base


def test_a_clean_install_fits_and_says_what_it_added() -> None:
    out = fit.verdict(record())
    assert out.fits is True
    assert out.added == [{"name": "torchsort", "version": "0.1.10+pt213cpu", "mb": 2.5}]
    assert out.added_mb == 2.5 and out.replaced == []
    assert "adds 1 package, 2.5 MB" in out.reason and "ABI audit of 2 new modules pass" in out.reason


def test_a_failed_install_does_not_fit_with_pips_error() -> None:
    r = record(install={"rc": 1, "tail": [
        "Collecting x", "ERROR: Could not find a version that satisfies the requirement x",
        "ERROR: No matching distribution found for x"]}, test=None, abi=None)
    r["after"] = r["before"]
    out = fit.verdict(r)
    assert out.fits is False
    assert out.reason == "pip install failed: ERROR: No matching distribution found for x"


def test_a_changed_torch_does_not_fit() -> None:
    r = record(torch_after=["torch 2.14.0 1300 def"])
    r["after"]["torch"]["version"] = "2.14.0"
    assert fit.verdict(r).reason == "changes torch (2.13.0+cpu -> 2.14.0)"
    r = record(torch_after=["torch 2.13.0+cpu 1200 other-state"])  # same version, new files
    assert fit.verdict(r).reason == "reinstalls torch 2.13.0+cpu (its files changed)"


def test_torch_added_to_a_torch_less_image_does_not_fit_and_says_how_big() -> None:
    r = record(torch_before=None, torch_after=TORCH)
    del r["before"]["torch"]
    r["after"]["nvidia-cublas"] = {"version": "13.0", "size": 300_000_000}
    out = fit.verdict(r)
    assert out.fits is False
    assert out.reason == "adds torch (1000 MB) to an image without torch"


def test_a_replaced_package_does_not_fit_and_is_named() -> None:
    r = record()
    r["after"]["numpy"]["version"] = "2.2.6"
    out = fit.verdict(r)
    assert out.fits is False and out.reason == "replaces numpy 1.26.4 -> 2.2.6"
    assert out.replaced == [{"name": "numpy", "before": "1.26.4", "after": "2.2.6"}]
    r = record()
    del r["after"]["numpy"]
    assert fit.verdict(r).reason == "replaces numpy 1.26.4 -> removed"


def test_a_failing_test_does_not_fit_with_its_error() -> None:
    r = record(test={"rc": 1, "tail": ["Traceback (most recent call last):", '  File "<string>"',
                                        "ModuleNotFoundError: No module named 'torch'"]})
    assert fit.verdict(r).reason == ("its test fails here: ModuleNotFoundError: No module"
                                     " named 'torch'")


def test_an_abi_failure_does_not_fit_unless_allowed() -> None:
    failure = {"dist": "numba", "module": "numba/np/ufunc/tbbpool.so",
               "library": "libtbb.so.12", "error": "x"}
    r = record(abi={"modules": 5, "failures": [failure], "host_provided": []})
    out = fit.verdict(r)
    assert out.fits is False
    assert out.reason == ("the ABI audit fails: numba: numba/np/ufunc/tbbpool.so: missing"
                          " library libtbb.so.12")
    tbb = AllowedModule(module="numba/np/ufunc/tbbpool*", library="libtbb.so.12",
                        reason="optional TBB layer")
    allowed = fit.verdict(r, allow=[tbb])
    assert allowed.fits is True
    assert allowed.abi is not None and allowed.abi["allowed"][0]["allowed_because"]
    # the same module with an undefined torch symbol: not what the allowance expects
    broken = {**failure, "symbol": "_ZN3c1019UndefinedTensorImpl10_singletonE"}
    r = record(abi={"modules": 5, "failures": [broken], "host_provided": []})
    assert fit.verdict(r, allow=[tbb]).fits is False


def test_no_audit_no_fit() -> None:
    """An install whose audit did not run (or was not recorded) proves nothing about its
    modules: not a fit, even with every other rule kept."""
    out = fit.verdict(record(abi=None))
    assert out.fits is False and out.reason.startswith("no ABI audit ran")
    assert fit.verdict(record(abi={"error": ["boom"]})).fits is False


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{info}/METADATA", meta)
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_the_script_records_what_a_real_pip_install_replaced(tmp_path: Path) -> None:
    """fit_script.py with a real pip, in a fresh venv, against a folder index: a wheel that
    needs a newer `dep` replaces the installed one, and the verdict names it."""
    links = tmp_path / "links"
    links.mkdir()
    for version in ("1.0", "2.0"):
        _wheel(links, "dep", version, [])
    _wheel(links, "app", "1.0", ["dep>=2"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(links), "dep==1.0"], check=True)
    test = tmp_path / "test.sh"
    test.write_text(f"{py} -c 'import app'")
    # --index-url to a folder that is no index; pip still resolves from --find-links via
    # PIP_FIND_LINKS, and nothing reaches the network
    out = subprocess.run(
        [py, str(fit.SCRIPT), "--index-url", (tmp_path / "none").as_uri(), "--spec", "app==1.0",
         "--test-file", str(test)],
        capture_output=True, text=True, timeout=300,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PIP_FIND_LINKS": str(links),
             "PIP_NO_INDEX": "1"})
    data = fit.parse(out.stdout)
    assert data is not None, out.stdout + out.stderr
    # pip's resolver said so first: nothing was installed (or downloaded)
    assert data["resolution"]["refuse"] is True, data["resolution"]
    assert {(w["name"], w["version"]) for w in data["resolution"]["would_install"]} == {
        ("app", "1.0"), ("dep", "2.0")}
    assert data["install"]["rc"] is None and data["after"] == data["before"]
    verdict = fit.verdict(data)
    assert verdict.fits is False and verdict.reason == "replaces dep 1.0 -> 2.0"
    assert [a["name"] for a in verdict.added] == ["app"]
    assert json.dumps(data)
    # the same verdict as a real install gives: without the resolution's record, the
    # install's own before/after say the same
    installed = subprocess.run(
        [py, "-m", "pip", "install", "-q", "app==1.0"], capture_output=True, text=True,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PIP_FIND_LINKS": str(links),
             "PIP_NO_INDEX": "1"})
    assert installed.returncode == 0, installed.stderr
    after = {**data["before"], "dep": {"version": "2.0", "size": 1},
             "app": {"version": "1.0", "size": 1}}
    real = fit.verdict({**data, "resolution": None, "install": {"rc": 0, "tail": []},
                        "after": after})
    assert real.fits is False and real.reason == verdict.reason


@pytest.mark.fresh_python
def test_a_resolution_that_fits_is_installed_and_tested(tmp_path: Path) -> None:
    """What the resolver clears is installed for real, tested and audited as before."""
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links, "app", "1.0", [])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    test = tmp_path / "test.sh"
    test.write_text(f"{py} -c 'import app'")
    out = subprocess.run(
        [py, str(fit.SCRIPT), "--index-url", (tmp_path / "none").as_uri(), "--spec", "app==1.0",
         "--test-file", str(test), "--abi", str(fit.ABI_SCRIPT), "--refuse-added",
         fit.TORCH_STACK.pattern],
        capture_output=True, text=True, timeout=300,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PIP_FIND_LINKS": str(links),
             "PIP_NO_INDEX": "1"})
    data = fit.parse(out.stdout)
    assert data is not None, out.stdout + out.stderr
    assert data["resolution"]["refuse"] is False and data["install"]["rc"] == 0
    assert data["test"]["rc"] == 0 and data["abi"]["modules"] == 0
    assert fit.verdict(data).fits is True


def test_the_resolution_refuses_torch_into_a_torch_less_image() -> None:
    r = record(resolution={"rc": 0, "refuse": True, "would_install": [
        {"name": "torchsort", "version": "0.1.10", "download_mb": 0.4},
        {"name": "torch", "version": "2.13.0+cpu", "download_mb": 187.0}]},
        install={"rc": None, "tail": []}, test=None, abi=None)
    r["before"] = {"numpy": {"version": "1.26.4", "size": 1}}
    r["after"] = r["before"]
    out = fit.verdict(r)
    assert out.fits is False and out.reason == "adds torch (187 MB download) to an image without torch"
    assert out.added_mb == 187.4
    assert out.added == [{"name": "torchsort", "version": "0.1.10", "mb": 0.4},
                         {"name": "torch", "version": "2.13.0+cpu", "mb": 187.0}]
    # a size the index did not say counts as nothing, not as a guess
    r["resolution"]["would_install"][0]["download_mb"] = None
    assert fit.verdict(r).added_mb == 187.0


@pytest.mark.parametrize("tail,expected", [
    (["a", "ERROR: boom", "hint"], "ERROR: boom"),
    (["x", "ValueError: bad"], "ValueError: bad"),
    (["just output"], "just output"),
    ([], "no output"),
])
def test_the_reason_is_the_line_that_says_why(tail: list[str], expected: str) -> None:
    assert fit._last_error(tail) == expected


@pytest.mark.parametrize(("would", "reason"), [
    ({"name": "torch", "version": "2.14.0", "download_mb": 900.0},
     "changes torch (2.13.0+cpu -> 2.14.0)"),
    ({"name": "torch", "version": "2.13.0+cpu", "download_mb": 187.0},
     "reinstalls torch 2.13.0+cpu (its files changed)"),
    ({"name": "numpy", "version": "1.26.4", "download_mb": 18.0},
     "replaces numpy 1.26.4 (reinstalled)"),
])
def test_the_resolution_names_what_it_would_replace(would: dict[str, Any], reason: str) -> None:
    r = record(resolution={"rc": 0, "refuse": True, "would_install": [
        {"name": "torchsort", "version": "0.1.10", "download_mb": 0.44}, would]},
        install={"rc": None, "tail": []}, test=None, abi=None)
    r["after"] = r["before"]
    out = fit.verdict(r)
    assert out.fits is False and out.reason == reason
    assert out.replaced == [{"name": would["name"], "before": r["before"][would["name"]]["version"],
                             "after": would["version"]}]
    assert out.added_mb == 0.4  # 0.44, rounded as the install's sizes are


def test_a_refusal_the_rules_cannot_name_still_refuses() -> None:
    r = record(resolution={"rc": 0, "refuse": True, "would_install": [
        {"name": "torchsort", "version": "0.1.10", "download_mb": 0.4}]},
        install={"rc": None, "tail": []}, test=None, abi=None)
    out = fit.verdict(r)
    assert out.fits is False and out.reason == "the resolution was refused"


def test_the_rules_word_their_reasons_exactly() -> None:
    """Each rule's wording, as the catalog shows it: the stack member named when torch
    itself is not added, sizes to a tenth of a MB, at most three replacements named."""
    lean = {"fastapi": {"version": "0.110.0", "size": 1_000_000}}
    r = record(before=lean, torch_before=None, torch_after=None)
    r["after"] = {**lean, "triton": {"version": "3.5.0", "size": 1_040_040_000},
                  "nvidia-nccl-cu13": {"version": "2.28.0", "size": 250_000_000},
                  "torchsort": {"version": "0.1.10", "size": 300_000}}
    assert fit.verdict(r).reason == "adds nvidia-nccl-cu13 (1290 MB) to an image without torch"
    r["after"] = {**lean, "triton": {"version": "3.5.0", "size": 44_440_000}}
    assert fit.verdict(r).reason == "adds triton (44.4 MB) to an image without torch"
    # the same stack into an image that has torch breaks no stack rule
    with_torch = record()
    with_torch["after"]["triton"] = {"version": "3.5.0", "size": 1_000}
    assert not fit.verdict(with_torch).reason.startswith("adds")
    many = record()
    names = ["a", "b", "c", "d", "e"]
    many["before"].update({n: {"version": "1.0", "size": 1} for n in names})
    many["after"].update({n: {"version": "2.0", "size": 1} for n in names})
    assert fit.verdict(many).reason == ("replaces a 1.0 -> 2.0, b 1.0 -> 2.0, c 1.0 -> 2.0"
                                        " and 2 more")


def test_a_refusal_keeps_what_was_added_and_the_audits_evidence() -> None:
    """A refused pair's record is evidence: what the install added (and its size, in
    tenths of a MB) and, for an audit failure, the audit's own findings."""
    r = record(abi={"modules": 3, "python": "3.11.2", "host_provided": ["libcuda.so.1"],
                    "failures": [{"module": "torchsort/_C.so", "distribution": "torchsort",
                                  "symbol": "_ZN3c104cuda9SetDeviceEi"}]})
    r["after"]["torchsort"]["size"] = 1_260_000
    r["after"]["extra"] = {"version": "1.0", "size": 1_240_000}
    out = fit.verdict(r)
    assert out.fits is False and out.reason.startswith("the ABI audit fails: ")
    assert out.added == [{"name": "extra", "version": "1.0", "mb": 1.2},
                         {"name": "torchsort", "version": "0.1.10+pt213cpu", "mb": 1.3}]
    assert out.added_mb == 2.5  # 1.2 + 1.3, rounded to a tenth (not 2.50000001 or 2.5 by luck)
    assert out.abi == {"modules": 3, "failures": r["abi"]["failures"],
                       "host_provided": ["libcuda.so.1"], "allowed": [], "python": "3.11.2"}


def test_the_added_size_is_rounded_to_tenths() -> None:
    r = record()
    r["after"]["a"] = {"version": "1", "size": 1_040_000}
    r["after"]["b"] = {"version": "1", "size": 1_040_000}
    r["after"]["torchsort"]["size"] = 1_040_000
    out = fit.verdict(r)
    assert out.added_mb == 3.0 and "3 MB" in out.reason  # 1.0 * 3, not 3.12


def test_a_fit_records_the_audits_host_libraries_and_python() -> None:
    r = record(abi={"modules": 2, "failures": [], "host_provided": ["libcuda.so.1"],
                    "python": "3.11.2"})
    out = fit.verdict(r)
    assert out.fits is True
    assert out.abi is not None
    assert out.abi["host_provided"] == ["libcuda.so.1"] and out.abi["python"] == "3.11.2"
    # a record from an older script, without them: empty, not missing
    r["abi"] = {"modules": 2, "failures": []}
    old = fit.verdict(r).abi
    assert old is not None and old["host_provided"] == [] and old["python"] == ""


def test_an_audit_that_did_not_run_is_named() -> None:
    out = fit.verdict(record(abi={"error": ["Traceback (most recent call last):",
                                            "OSError: libgone.so.1: cannot open"]}))
    assert out.fits is False
    assert out.reason == "the ABI audit did not run: OSError: libgone.so.1: cannot open"


def test_a_torch_that_the_install_removed_is_named() -> None:
    r = record(torch_after=[])
    del r["after"]["torch"]
    out = fit.verdict(r)
    assert out.fits is False and out.reason == "changes torch (2.13.0+cpu -> None)"


@pytest.mark.parametrize(("count", "more"), [(3, ""), (4, " and 1 more"), (5, " and 2 more")])
def test_at_most_three_replacements_are_named(count: int, more: str) -> None:
    r = record()
    for n in range(count):
        r["before"][f"p{n}"] = {"version": "1.0", "size": 1}
        r["after"][f"p{n}"] = {"version": "2.0", "size": 1}
    out = fit.verdict(r)
    assert out.reason == "replaces " + ", ".join(f"p{n} 1.0 -> 2.0" for n in range(3)) + more


def test_the_stack_size_of_a_torch_less_image_is_rounded_to_tenths() -> None:
    """Download sizes come from the index with more digits than a tenth."""
    r = record(resolution={"rc": 0, "refuse": True, "would_install": [
        {"name": "torch", "version": "2.13.0+cpu", "download_mb": 187.04},
        {"name": "triton", "version": "3.0", "download_mb": 100.03}]},
        install={"rc": None, "tail": []}, test=None, abi=None)
    r["before"] = {"numpy": {"version": "1.26.4", "size": 1}}
    out = fit.verdict(r)
    assert out.reason == "adds torch (287.1 MB download) to an image without torch"


# --- a fit's proof is of these exact inputs, and sees torch's files ---------------------

def _target(digest: str = "sha256:" + "a" * 64) -> fit.Target:
    return fit.Target(image="tts-deps", platform="p", ref=f"r/tts-deps@{digest}",
                      digest=digest, included={})


def _candidate(sha256: str = "1" * 64, recipe: Any = None) -> fit.Candidate:
    return fit.Candidate(ReleaseFile("app", "1.0", "app-1.0-py3-none-any.whl",
                                     "http://i/+f/app-1.0-py3-none-any.whl", sha256),
                         "factory/p", recipe)


def _recipe(command: str = "python -c 'import app'", allow: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(test=SimpleNamespace(command=command),
                           audit=SimpleNamespace(allow=[SimpleNamespace(key=lambda k=k: k)
                                                        for k in allow]))


def test_a_fit_proof_is_of_one_image_digest_one_wheel_file_and_the_rules(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part of what a fit tested changes its inputs, so a proof of another image
    digest (a rebuilt image), another file, another test or allowance, or older rules is
    never taken for this pair's."""
    base = fit.fit_inputs(_target(), _candidate(recipe=_recipe()))
    assert fit.fit_inputs(_target(), _candidate(recipe=_recipe())) == base
    others = [
        fit.fit_inputs(_target("sha256:" + "b" * 64), _candidate(recipe=_recipe())),
        fit.fit_inputs(_target(), _candidate("2" * 64, recipe=_recipe())),
        fit.fit_inputs(_target(), _candidate(recipe=_recipe("pytest -q"))),
        fit.fit_inputs(_target(), _candidate(recipe=_recipe(allow=("x.so",)))),
        fit.fit_inputs(replace(_target(), allow=(AllowedModule(module="y.so", library="liby.so.1", reason="vendored by the image"),)),
                       _candidate(recipe=_recipe())),
    ]
    monkeypatch.setattr(fit, "RULES", fit.RULES + 1)
    others.append(fit.fit_inputs(_target(), _candidate(recipe=_recipe())))
    assert base not in others and len(set(others)) == len(others)


def test_pairs_never_take_a_proof_made_on_another_image_digest() -> None:
    old, new, wheel = _target(), _target("sha256:" + "c" * 64), _candidate()
    proof = Proof.new(Kind.FIT, Subject(platform="p", wheel=wheel.file.filename,
                                        wheel_sha256=wheel.file.sha256, image="tts-deps",
                                        image_digest=old.digest),
                      inputs=fit.fit_inputs(old, wheel), passed=True, evidence={})
    session: Any = SimpleNamespace(proofs=SimpleNamespace(
        wheel=lambda f: [proof] if f is wheel.file else []))
    [same] = fit.pairs(session, [old], [wheel])
    assert (same.target, same.wheel, same.proof) == (old, wheel, proof)
    [rebuilt] = fit.pairs(session, [new], [wheel])
    assert rebuilt.proof is None  # refitted, not called current


def test_a_wheel_the_image_ships_at_that_version_is_no_pair() -> None:
    """Its smoke test and ABI audit are that pair's proof; another version, or the next
    wheel, is still a pair."""
    session: Any = SimpleNamespace(proofs=SimpleNamespace(wheel=lambda f: []))
    ships = replace(_target(), included={"my-app": "1.0"})
    app = fit.Candidate(ReleaseFile("My_App", "1.0", "my_app-1.0-py3-none-any.whl", "u", "1"),
                        "factory/p", None)
    newer = fit.Candidate(ReleaseFile("my-app", "2.0", "my_app-2.0-py3-none-any.whl", "u", "2"),
                          "factory/p", None)
    found = fit.pairs(session, [ships], [app, newer, _candidate()])
    assert [p.wheel for p in found] == [newer, _candidate()]


class LocalEngine:
    """`docker run` of the fit script, run instead by a fresh venv's Python on this host:
    the script, its argv and its files are the factory's own."""

    def __init__(self, venv: Path, links: Path) -> None:
        self.venv, self.links = venv, links
        self.argv: list[str] = []

    def run_script(self, ref: str, argv: list[str], *, files: dict[str, Any], folder: Path,
                   env: dict[str, str], log_file: Path) -> Any:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            target = folder / name
            if isinstance(content, Path):
                target.write_bytes(content.read_bytes())
            else:
                target.write_text(content)
        self.argv = argv
        local = [str(self.venv / "bin" / "python")] + [
            a.replace("/bf/", f"{folder}/") for a in argv[1:]]
        done = subprocess.run(local, capture_output=True, text=True, timeout=300, env={
            **env, "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(self.links)})
        return SimpleNamespace(output=done.stdout, returncode=done.returncode,
                               tail=done.stderr[-2000:])


@pytest.mark.fresh_python
def test_a_wheel_that_rewrites_torchs_files_does_not_fit(tmp_path: Path) -> None:
    """torch's version stays, but the wheel ships torch/version.py over torch's own: only
    the file state before and after shows it. run_fit, with the real script in a fresh
    venv holding a stand-in torch, refuses the pair; a wheel that leaves torch alone fits."""
    links = tmp_path / "links"
    links.mkdir()
    with zipfile.ZipFile(_wheel(links, "torch", "2.13.0", []), "a") as z:
        z.writestr("torch/version.py", "__version__ = '2.13.0'\n")
    with zipfile.ZipFile(_wheel(links, "app", "1.0", []), "a") as z:
        z.writestr("torch/version.py", "__version__ = '2.13.0'  # app's own copy\n")
    _wheel(links, "clean", "1.0", [])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                    "--find-links", str(links), "torch==2.13.0"], check=True)
    engine = LocalEngine(venv, links)
    attached: list[str] = []
    session: Any = SimpleNamespace(
        factory=small_factory(tmp_path), docker=engine,
        devpi=SimpleNamespace(simple_url=lambda index: (tmp_path / "none").as_uri(),
                              attach_test_result=lambda url, text: attached.append(text)))

    def fit_of(name: str) -> Proof:
        wheel = fit.Candidate(ReleaseFile(name, "1.0", f"{name}-1.0-py3-none-any.whl",
                                          f"http://i/+f/{name}", "1" * 64), "factory/p", None)
        pair = fit.Pair(_target(), wheel, None)
        return fit.run_fit(session, pair, work=tmp_path / "work" / name,
                           log_file=tmp_path / f"{name}.log")

    rewrote = fit_of("app")
    assert "--torch-state" in engine.argv
    assert rewrote.passed is False, rewrote.evidence
    assert rewrote.evidence["reason"] == "reinstalls torch 2.13.0 (its files changed)"
    clean = fit_of("clean")
    assert clean.passed is True, clean.evidence["reason"]
    assert len(attached) == 2  # each proof attached to its wheel's file
