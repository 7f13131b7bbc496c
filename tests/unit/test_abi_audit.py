"""The ABI audit's loader, run with this host's Python on shared objects compiled here:
each kind of defect it must catch, caught, and a clean module passing. (The same script
runs inside images; tests/integration/test_audit.py runs it there.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.audit.abi import SCRIPT, AbiReport, parse, require_clean
from basefactory.audit.allow import AllowedModule
from basefactory.plumbing.errors import TestFailed
from basefactory.proofs.model import Kind, Subject

SYMBOL = "_ZN3c106detail23torchInternalAssertFailEPKcS2_jS2_RKSs"
SOURCES = {
    "good": "int good(void) { return 1; }",
    "undef": f"extern int {SYMBOL}(void); int f(void) {{ return {SYMBOL}(); }}",
    "crash": "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }",
    "uses": "extern int g(void); int h(void) { return g(); }",
    # a kernel module: the driver's API (libcuda, the host's) and, in the bad one, a torch
    # symbol nothing here defines, which dlopen never reaches once libcuda is missing
    "kernel": "extern int cuInit(unsigned); int k(void) { return cuInit(0); }",
    "kernel_bad": f"extern int cuInit(unsigned); extern int {SYMBOL}(void);"
                  f" int k(void) {{ return cuInit(0) + {SYMBOL}(); }}",
}


def gcc(*args: str) -> None:
    subprocess.run(["gcc", "-shared", "-fPIC", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("abi")
    for name, code in SOURCES.items():
        (root / f"{name}.c").write_text(code + "\n")
    libs = root / "libs"
    libs.mkdir()
    (root / "dep.c").write_text("int g(void) { return 2; }\nint cuInit(unsigned f) { return 0; }\n")
    for soname in ("libbfmissing.so.1", "libcuda.so.1"):
        gcc("-o", str(libs / soname), str(root / "dep.c"), f"-Wl,-soname,{soname}")
    pkg = root / "site" / "pkg"
    pkg.mkdir(parents=True)
    gcc("-o", str(pkg / "good.so"), str(root / "good.c"))
    gcc("-o", str(pkg / "undef.so"), str(root / "undef.c"))
    gcc("-o", str(pkg / "crash.so"), str(root / "crash.c"))
    # linked against libraries that are not there at load time (no rpath to libs/)
    gcc("-o", str(pkg / "needs.cpython-311-x86_64-linux-gnu.so"), str(root / "uses.c"),
        f"-L{libs}", "-l:libbfmissing.so.1")
    gcc("-o", str(pkg / "driver.so"), str(root / "kernel.c"), f"-L{libs}", "-l:libcuda.so.1")
    gcc("-o", str(pkg / "driver_bad.so"), str(root / "kernel_bad.c"), f"-L{libs}", "-l:libcuda.so.1")
    return root / "site"


def run(*args: str) -> AbiReport:
    out = subprocess.run([sys.executable, str(SCRIPT), "--no-site", *args], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    report = parse(out)
    assert report is not None, out
    return report


def test_each_defect_is_named_and_a_clean_module_passes(site: Path) -> None:
    report = run("--path", str(site))
    assert report.modules == 6
    by_module = {f["module"]: f for f in report.failures}
    assert set(by_module) == {"pkg/undef.so", "pkg/crash.so", "pkg/driver_bad.so",
                              "pkg/needs.cpython-311-x86_64-linux-gnu.so"}
    # dlopen stopped at the missing libcuda; the static check found the torch symbol
    assert by_module["pkg/driver_bad.so"]["symbol"] == SYMBOL
    assert by_module["pkg/driver_bad.so"]["static_check"]["unresolved"] == [SYMBOL]
    assert by_module["pkg/undef.so"]["symbol"] == SYMBOL
    assert by_module["pkg/needs.cpython-311-x86_64-linux-gnu.so"]["library"] == "libbfmissing.so.1"
    assert by_module["pkg/crash.so"]["error"].startswith("crashed while loading")
    # the driver library is the host's (the NVIDIA runtime mounts it): listed, not failed
    assert [(h["module"], h["library"]) for h in report.host_provided] == [
        ("pkg/driver.so", "libcuda.so.1")]
    # ... after its symbols were checked statically: cuInit is the driver's, nothing else
    assert report.host_provided[0]["static_check"] == {
        "unresolved": [], "needs_host": ["libcuda.so.1"], "missing": [], "symbols": 1}
    assert not report.passed
    with pytest.raises(TestFailed) as caught:
        require_clean(report, "image x on p", refused="nothing was pushed")
    message = str(caught.value)
    assert f"pkg/undef.so: undefined symbol {SYMBOL}" in message
    assert "missing library libbfmissing.so.1" in message and "libcuda" not in message
    assert "4 of 6 extension modules do not load; nothing was pushed" in message


def test_a_clean_tree_passes_and_an_empty_one_is_not_a_pass(site: Path, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "good.so").write_bytes((site / "pkg" / "good.so").read_bytes())
    report = run("--path", str(clean))
    assert report.modules == 1 and report.failures == [] and report.passed
    require_clean(report, "x", refused="nothing was pushed")
    empty = run("--path", str(tmp_path / "nothing-here"))
    assert empty.modules == 0 and empty.failures == []
    with pytest.raises(TestFailed, match="found no extension module"):  # checked nothing
        require_clean(empty, "x", refused="nothing was pushed")
    require_clean(empty, "a pure wheel", refused="nothing was uploaded", allow_empty=True)


def test_only_the_named_distribution_is_audited() -> None:
    # this host's own site-packages: pydantic-core is installed in the test venv
    report = subprocess.run([sys.executable, str(SCRIPT), "--dist", "pydantic_core"],
                            check=True, capture_output=True, text=True, timeout=120).stdout
    parsed = parse(report)
    assert parsed is not None and parsed.modules >= 1 and parsed.passed


def allow(module: str, reason: str, *, library: tuple[str, ...] = (),
          symbol: tuple[str, ...] = ()) -> AllowedModule:
    return AllowedModule(module=module, library=library, symbol=symbol, reason=reason)


def test_an_allowed_module_is_recorded_with_its_reason_not_dropped(site: Path) -> None:
    report = run("--path", str(site)).allowing([
        allow("pkg/needs*", "an optional backend, not installed", library=("libbfmissing.so.*",))])
    assert {f["module"] for f in report.failures} == {
        "pkg/undef.so", "pkg/driver_bad.so", "pkg/crash.so"}
    (allowed,) = report.allowed
    assert allowed["module"] == "pkg/needs.cpython-311-x86_64-linux-gnu.so"
    assert allowed["allowed_because"] == "an optional backend, not installed"
    assert report.evidence()["allowed"] == [allowed]
    everything = report.allowing([allow("pkg/*", "any library or symbol, for this test",
                                        library=("*",), symbol=("*",))])
    # a crash is never allowed: an allowance names a library or a symbol, not "anything"
    assert [f["module"] for f in everything.failures] == ["pkg/crash.so"]
    assert len(everything.allowed) == 3


def test_an_allowed_module_failing_for_another_reason_still_fails(site: Path) -> None:
    """An allowance for "libbfmissing is not installed" does not hide the same files
    failing with an undefined torch symbol (an ABI break), nor another missing library."""
    report = run("--path", str(site))
    expecting_a_library = [allow("pkg/*", "an optional backend, not installed",
                                 library=("libbfmissing.so.1",))]
    after = report.allowing(expecting_a_library)
    failed = {f["module"]: f for f in after.failures}
    assert failed["pkg/undef.so"]["symbol"] == SYMBOL
    assert failed["pkg/driver_bad.so"]["symbol"] == SYMBOL
    assert [a["module"] for a in after.allowed] == ["pkg/needs.cpython-311-x86_64-linux-gnu.so"]
    another_library = report.allowing([allow("pkg/needs*", "a different optional backend",
                                             library=("libother.so.*",))])
    assert "pkg/needs.cpython-311-x86_64-linux-gnu.so" in {
        f["module"] for f in another_library.failures}


def test_an_allow_entry_needs_a_reason(tmp_path: Path) -> None:
    from basefactory.images.definition import load_image
    from basefactory.plumbing.errors import ConfigError

    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "image.toml").write_text('size_budget_mb = 100\n[[audit.allow]]\nmodule = "x*"\n'
                                       'library = "libx.so.1"\n')
    with pytest.raises(ConfigError, match=r"audit\.allow\.0\.reason"):
        load_image(folder)
    # and what it expects to be missing: an allowance without it would hide any failure
    (folder / "image.toml").write_text('size_budget_mb = 100\n[[audit.allow]]\nmodule = "x*"\n'
                                       'reason = "an optional backend"\n')
    with pytest.raises(ConfigError, match=r"must name what is expected to be missing"):
        load_image(folder)


def test_a_child_inherits_its_parents_allowances(tmp_path: Path) -> None:
    from basefactory.images.definition import load_images

    for name, parent, glob in (("base-img", "platform", "nvidia/*"), ("child", "base-img", "numba/*"),
                               ("other", "slim", None)):
        (tmp_path / name).mkdir()
        allow = (f'[[audit.allow]]\nmodule = "{glob}"\nlibrary = "libx.so.1"\n'
                 f'reason = "a reason for {glob}"\n' if glob else "")
        (tmp_path / name / "image.toml").write_text(
            f'parent = "{parent}"\nsize_budget_mb = 100\n{allow}')
    images = load_images(tmp_path, recipes=set())
    assert [a.module for a in images["child"].audit.allow] == ["nvidia/*", "numba/*"]
    assert [a.module for a in images["base-img"].audit.allow] == ["nvidia/*"]
    assert images["other"].audit.allow == ()


@pytest.fixture(scope="module")
def driver_linked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Modules that need the driver's libcuda (so dlopen stops there and the static check
    decides), each with a defect dlopen would meet on a GPU host:
    gone/driver_gone.so   also needs libgone.so.1, which the image lacks;
    later/driver_g2.so    calls g2, defined only by a library that an earlier, unrelated
                          module (first/neighbour.so) has mapped with RTLD_LOCAL."""
    root = tmp_path_factory.mktemp("driver")
    libs = root / "libs"
    libs.mkdir()
    (root / "cuda.c").write_text("int cuInit(unsigned f) { return 0; }\n")
    (root / "gone.c").write_text("int gone(void) { return 3; }\n")
    (root / "neigh.c").write_text("int g2(void) { return 4; }\n")
    gcc("-o", str(libs / "libcuda.so.1"), str(root / "cuda.c"), "-Wl,-soname,libcuda.so.1")
    gcc("-o", str(libs / "libgone.so.1"), str(root / "gone.c"), "-Wl,-soname,libgone.so.1")
    for folder in ("gone", "first", "later"):
        (root / folder).mkdir()
    # the neighbour ships its library beside it and finds it through its RUNPATH
    gcc("-o", str(root / "first" / "libneigh.so.1"), str(root / "neigh.c"),
        "-Wl,-soname,libneigh.so.1")
    (root / "neighbour.c").write_text("extern int g2(void); int n(void) { return g2(); }\n")
    gcc("-o", str(root / "first" / "neighbour.so"), str(root / "neighbour.c"),
        f"-L{root / 'first'}", "-l:libneigh.so.1", "-Wl,-rpath,$ORIGIN")
    (root / "driver_gone.c").write_text(
        "extern int cuInit(unsigned); extern int gone(void);"
        " int k(void) { return cuInit(0) + gone(); }\n")
    # libcuda first: dlopen reports the first library it cannot open, the host's
    gcc("-o", str(root / "gone" / "driver_gone.so"), str(root / "driver_gone.c"),
        f"-L{libs}", "-l:libcuda.so.1", "-l:libgone.so.1")
    (root / "driver_g2.c").write_text(
        "extern int cuInit(unsigned); extern int g2(void); int k(void) { return cuInit(0) + g2(); }\n")
    # linked with -z undefs: g2 is left for the loader, as a module that counts on
    # another having loaded its provider would be
    gcc("-o", str(root / "later" / "driver_g2.so"), str(root / "driver_g2.c"),
        f"-L{libs}", "-l:libcuda.so.1")
    return root


def test_a_driver_module_that_needs_a_missing_ordinary_library_fails(driver_linked: Path) -> None:
    report = run("--path", str(driver_linked / "gone"))
    [failure] = report.failures
    assert failure["module"] == "driver_gone.so" and failure["library"] == "libgone.so.1"
    assert failure["static_check"]["missing"] == ["libgone.so.1"]
    assert failure["static_check"]["needs_host"] == ["libcuda.so.1"]
    assert report.host_provided == []
    with pytest.raises(TestFailed, match="driver_gone.so: missing library libgone.so.1"):
        require_clean(report, "x", refused="nothing was pushed")


def test_the_static_verdict_does_not_depend_on_what_loaded_before(driver_linked: Path) -> None:
    alone = run("--path", str(driver_linked / "later"))
    after = run("--path", str(driver_linked / "first"), "--path", str(driver_linked / "later"))
    for report in (alone, after):
        failed = {f["module"]: f for f in report.failures}
        assert failed["driver_g2.so"]["symbol"] == "g2", report.failures
    # the neighbour itself loads (its library is beside it)
    assert "neighbour.so" not in {f["module"] for f in after.failures}


def test_messages_name_a_module_of_no_distribution_and_the_empty_audits_fix() -> None:
    """What a user reads: a failing module no distribution installed is said to be so,
    and an audit that found nothing says where to look."""
    report = AbiReport(3, [{"module": "stray/_x.so", "dist": None, "library": "liby.so.1",
                            "error": "liby.so.1: cannot open shared object file"}])
    assert report.lines() == ["no distribution: stray/_x.so: missing library liby.so.1"]
    with pytest.raises(TestFailed) as caught:
        require_clean(AbiReport(0, []), "image x", refused="nothing was pushed")
    assert caught.value.hint == "is site-packages where Python looks for it?"


def test_the_evidence_and_the_refusal_say_everything_the_proof_keeps() -> None:
    from basefactory.audit.abi import FIX

    failures = [{"module": f"pkg/m{i}.so", "dist": "pkg", "symbol": f"s{i}", "error": "e"}
                for i in (1, 2)]
    report = AbiReport(7, failures, [{"module": "k.so", "library": "libcuda.so.1"}], "3.11.2",
                       [{"module": "x.so", "allowed_because": "r"}])
    assert report.evidence() == {"modules": 7, "failures": failures,
                                 "host_provided": report.host_provided,
                                 "allowed": report.allowed, "python": "3.11.2"}
    with pytest.raises(TestFailed) as caught:
        require_clean(report, "image x on p", refused="nothing was pushed")
    assert str(caught.value).startswith(
        "the ABI audit of image x on p: 2 of 7 extension modules do not load; nothing was"
        " pushed:\n    pkg: pkg/m1.so: undefined symbol s1\n    pkg: pkg/m2.so: undefined"
        " symbol s2\n")
    assert caught.value.hint == FIX


def test_a_worker_that_cannot_start_fails_the_audit_instead_of_looping(site: Path,
                                                                        tmp_path: Path) -> None:
    """A worker that dies before loading anything (here a site hook kills it; in a fit, its
    script's folder was removed under a container a killed publish left running) used to be
    replaced forever, one Python process after another. It now fails every module once."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import os, sys\nif '--worker' in sys.argv:\n"
                                           "    os._exit(3)\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--no-site", "--path", str(site)],
                         check=True, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(hook)}).stdout
    report = parse(out)
    assert report is not None and report.modules > 0, out
    assert len(report.failures) == report.modules
    assert all("worker exited 3 before loading any module" in f["error"] for f in report.failures)


def test_the_audit_proof_carries_its_subject_inputs_verdict_and_evidence() -> None:
    failing = {"module": "x/_C.so", "distribution": "x", "symbol": "_Zsym"}
    report = AbiReport(4, [failing], ["libcuda.so.1"], "3.11.2")
    subject = Subject(platform="cpu", image="tts-deps", image_digest="d" * 64)
    proof = report.proof(subject, inputs="i" * 64)
    assert proof.kind == Kind.ABI_AUDIT and proof.subject == subject
    assert proof.inputs == "i" * 64 and proof.passed is False
    assert proof.evidence == {"modules": 4, "failures": [failing],
                              "host_provided": ["libcuda.so.1"], "allowed": [],
                              "python": "3.11.2"}
    assert AbiReport(4, [], [], "3.11.2").proof(subject, inputs="i").passed is True
