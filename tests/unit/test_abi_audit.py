"""The ABI audit's loader, run with this host's Python on shared objects compiled here:
each kind of defect it must catch, caught, and a clean module passing. (The same script
runs inside images; tests/integration/test_audit.py runs it there.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.audit import abi_script
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


# -- auditwheel's vendored libraries ---------------------------------------------------

@pytest.fixture(scope="module")
def vendored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy's layout: `pkg.libs/` holds libblas -> libgfort -> libquad, none with an
    RPATH; the extension `pkg/_ext.so` finds the folder through its own RPATH. The same
    chain in a folder of another name, and a vendored library whose sibling is gone."""
    root = tmp_path_factory.mktemp("vendored")
    (root / "quad.c").write_text("int q(void) { return 1; }\n")
    (root / "gfort.c").write_text("extern int q(void); int gf(void) { return q(); }\n")
    (root / "blas.c").write_text("extern int gf(void); int b(void) { return gf(); }\n")
    (root / "ext.c").write_text("extern int b(void); int e(void) { return b(); }\n")
    site = root / "site"
    for folder in ("pkg.libs", "plain", "gone.libs", "codec.", "codec2."):
        libs = site / folder
        libs.mkdir(parents=True)
        gcc("-o", str(libs / "libquad-1a.so.0"), str(root / "quad.c"), "-Wl,-soname,libquad-1a.so.0")
        gcc("-o", str(libs / "libgfort-2b.so.5"), str(root / "gfort.c"), f"-L{libs}",
            "-l:libquad-1a.so.0", "-Wl,-soname,libgfort-2b.so.5")
        gcc("-o", str(libs / "libblas-3c.so"), str(root / "blas.c"), f"-L{libs}",
            "-l:libgfort-2b.so.5", "-Wl,-soname,libblas-3c.so")
    (site / "gone.libs" / "libquad-1a.so.0").unlink()
    # auditwheel writes DT_RPATH (patchelf --force-rpath), which the loader also uses for
    # the libraries the extension's libraries need; a DT_RUNPATH serves only the
    # extension's own needs, so the same extension with one fails to load
    for folder, tags, libs in (("pkg", "--disable-new-dtags", "pkg.libs"),
                               ("runpath", "--enable-new-dtags", "pkg.libs"),
                               # PyNvVideoCodec's layout: the vendored folder is not
                               # `<name>.libs`, its extension names it in its RPATH
                               ("codec", "--disable-new-dtags", "codec."),
                               ("codec2", "--enable-new-dtags", "codec2.")):
        (site / folder).mkdir()
        gcc("-o", str(site / folder / "_ext.so"), str(root / "ext.c"), f"-L{site / libs}",
            "-l:libblas-3c.so", f"-Wl,{tags},-rpath,$ORIGIN/../{libs}")
    return site


def test_a_vendored_library_finds_its_siblings_as_its_extension_would(vendored: Path) -> None:
    """On a torch-less image the audit failed numpy 1.26.4's own OpenBLAS: opened alone it
    cannot find the gfortran beside it, which only numpy's extension (by its RPATH) makes
    the loader find. A vendored library now gets its siblings, and nothing else does."""
    report = run("--path", str(vendored / "pkg.libs"), "--path", str(vendored / "pkg"))
    assert report.modules == 4 and report.failures == [], report.failures
    # the same libraries in a folder that is not a wheel's vendored one get no help
    plain = run("--path", str(vendored / "plain"))
    assert {(f["module"], f["library"]) for f in plain.failures} == {
        ("libblas-3c.so", "libgfort-2b.so.5"), ("libgfort-2b.so.5", "libquad-1a.so.0")}
    # what the loader does with a RUNPATH: libblas found, its gfortran not
    [runpath] = run("--path", str(vendored / "runpath")).failures
    assert (runpath["module"], runpath["library"]) == ("_ext.so", "libgfort-2b.so.5")
    # a sibling that is not there fails every library that needs it, naming it
    gone = run("--path", str(vendored / "gone.libs"))
    assert {f["module"]: f["library"] for f in gone.failures} == {
        "libblas-3c.so": "libquad-1a.so.0", "libgfort-2b.so.5": "libquad-1a.so.0"}


def test_a_folder_an_extension_names_in_its_rpath_is_vendored_whatever_its_name(
        vendored: Path) -> None:
    """llm-deps failed its audit on PyNvVideoCodec's libraries (`pynvvideocodec./libxcb-…`
    missing its sibling libXau) though the real loader finds them through the extension's
    RPATH: the folder was not spelled `<name>.libs`. Named in an audited module's DT_RPATH,
    it is vendored; audited without that module, or named in a DT_RUNPATH (which serves only
    the extension's own needs), it is not."""
    report = run("--path", str(vendored / "codec."), "--path", str(vendored / "codec"))
    assert report.modules == 4 and report.failures == [], report.failures
    alone = run("--path", str(vendored / "codec."))
    assert {(f["module"], f["library"]) for f in alone.failures} == {
        ("libblas-3c.so", "libgfort-2b.so.5"), ("libgfort-2b.so.5", "libquad-1a.so.0")}
    runpath = run("--path", str(vendored / "codec2."), "--path", str(vendored / "codec2"))
    assert {(f["module"], f["library"]) for f in runpath.failures} == {
        ("libblas-3c.so", "libgfort-2b.so.5"), ("libgfort-2b.so.5", "libquad-1a.so.0"),
        ("_ext.so", "libgfort-2b.so.5")}
    folders = abi_script.rpath_folders([str(vendored / "codec" / "_ext.so"),
                                        str(vendored / "codec2" / "_ext.so"),
                                        str(vendored / "codec." / "libblas-3c.so")])
    assert folders == {os.path.realpath(vendored / "codec.")}


def test_only_a_library_in_a_vendored_folder_names_a_sibling(vendored: Path) -> None:
    error = "libgfort-2b.so.5: cannot open shared object file: No such file or directory"
    libs = vendored / "pkg.libs"
    assert abi_script.vendored_sibling(str(libs / "libblas-3c.so"), error) == str(
        libs / "libgfort-2b.so.5")
    assert abi_script.vendored_sibling(str(vendored / "plain" / "libblas-3c.so"), error) is None
    assert abi_script.vendored_sibling(str(libs / "libblas-3c.so"), None) is None
    assert abi_script.vendored_sibling(str(libs / "libblas-3c.so"), "undefined symbol: x") is None
    gone = "libnothere.so.1: cannot open shared object file: No such file or directory"
    assert abi_script.vendored_sibling(str(libs / "libblas-3c.so"), gone) is None
    codec = vendored / "codec."
    assert abi_script.vendored_sibling(str(codec / "libblas-3c.so"), error) is None
    assert abi_script.vendored_sibling(str(codec / "libblas-3c.so"), error, frozenset(
        {os.path.realpath(codec)})) == str(codec / "libgfort-2b.so.5")


# -- the script's functions, in this process (where mutation testing reaches them) -------

def test_the_static_check_resolves_what_the_module_would_load(driver_linked: Path) -> None:
    gone = abi_script.static_check(str(driver_linked / "gone" / "driver_gone.so"), {}, {})
    assert gone == {"unresolved": ["gone"], "needs_host": ["libcuda.so.1"],
                    "missing": ["libgone.so.1"], "symbols": 2}
    later = str(driver_linked / "later" / "driver_g2.so")
    assert abi_script.static_check(later, {}, {}) == {
        "unresolved": ["g2"], "needs_host": ["libcuda.so.1"], "missing": [], "symbols": 2}
    # what every module sees (the worker after import torch) resolves it
    neigh = str(driver_linked / "first" / "libneigh.so.1")
    assert abi_script.static_check(later, {"libneigh.so.1": neigh}, {})["unresolved"] == []
    # a library found through ld.so.cache, and its own needs followed
    libs = driver_linked / "libs"
    found = abi_script.static_check(str(driver_linked / "gone" / "driver_gone.so"), {},
                                    {"libgone.so.1": str(libs / "libgone.so.1")})
    assert found["missing"] == [] and found["unresolved"] == []
    # the neighbour's library by its RUNPATH ($ORIGIN): nothing missing, g2 defined
    assert abi_script.static_check(str(driver_linked / "first" / "neighbour.so"), {}, {}) == {
        "unresolved": [], "needs_host": [], "missing": [], "symbols": 1}


def test_the_static_check_follows_rpath_and_ld_library_path(vendored: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ext = str(vendored / "pkg" / "_ext.so")
    assert abi_script.static_check(ext, {}, {}) == {
        "unresolved": [], "needs_host": [], "missing": [], "symbols": 1}
    runpath = abi_script.static_check(str(vendored / "runpath" / "_ext.so"), {}, {})
    assert runpath["missing"] == ["libgfort-2b.so.5"] and runpath["unresolved"] == []
    blas = str(vendored / "plain" / "libblas-3c.so")
    assert abi_script.static_check(blas, {}, {})["missing"] == ["libgfort-2b.so.5"]
    monkeypatch.setenv("LD_LIBRARY_PATH", str(vendored / "plain"))
    assert abi_script.static_check(blas, {}, {}) == {
        "unresolved": [], "needs_host": [], "missing": [], "symbols": 1}


def test_the_verdict_of_each_kind_of_answer() -> None:
    """What the workers answered -> the report: a module that loaded is no row; a missing
    library and an undefined symbol fail; one that needs only the host's libcuda is
    listed as host-provided; its static check can still fail it."""
    cuda = "libcuda.so.1: cannot open shared object file: No such file or directory"
    todo = [f"/site/pkg/{m}.so" for m in ("ok", "lib", "sym", "host", "gone", "undef", "err",
                                          "nostatic")]
    results = {todo[0]: None, todo[1]: "libz9.so.1: cannot open shared object file",
               todo[2]: f"{todo[2]}: undefined symbol: _Zx", todo[3]: cuda, todo[4]: cuda,
               todo[5]: cuda, todo[6]: cuda, todo[7]: cuda}
    clean = {"unresolved": [], "needs_host": ["libcuda.so.1"], "missing": [], "symbols": 3}
    statics = {todo[3]: clean,
               todo[4]: {**clean, "missing": ["libgone.so.1", "libb.so.2"],
                         "needs_host": ["libcuda.so.1", "libnvidia-ml.so.1"]},
               todo[5]: {**clean, "unresolved": ["_Zt", "_Zu"]},
               todo[6]: {"error": "not an ELF64 little-endian file"}}
    report = abi_script.verdict(todo, results, statics, {todo[1]: "zed"}, ["/site"])
    assert report["modules"] == 8 and report["site"] == ["/site"]
    assert report["python"] == sys.version.split()[0]
    rows = {r["module"]: r for r in report["failures"]}
    assert list(rows) == ["pkg/lib.so", "pkg/sym.so", "pkg/gone.so", "pkg/undef.so", "pkg/err.so"]
    assert rows["pkg/lib.so"] == {"module": "pkg/lib.so", "dist": "zed", "library": "libz9.so.1",
                                  "host_provided": False,
                                  "error": "libz9.so.1: cannot open shared object file"}
    assert rows["pkg/sym.so"] == {"module": "pkg/sym.so", "dist": None, "symbol": "_Zx",
                                  "error": "undefined symbol: _Zx"}
    assert rows["pkg/gone.so"]["library"] == "libgone.so.1"
    assert rows["pkg/gone.so"]["host_provided"] is False
    assert rows["pkg/gone.so"]["error"] == (
        "libgone.so.1: cannot open shared object file (checked statically: missing"
        " libgone.so.1, libb.so.2; the module also needs libcuda.so.1, libnvidia-ml.so.1,"
        " the host's)")
    assert rows["pkg/undef.so"]["host_provided"] is False
    assert rows["pkg/undef.so"]["symbol"] == "_Zt" and rows["pkg/undef.so"]["error"] == (
        "undefined symbol: _Zt (checked statically: 2 unresolved of 3; the module also"
        " needs libcuda.so.1, the host's)")
    assert rows["pkg/err.so"]["error"] == ("cannot be checked statically: not an ELF64"
                                           " little-endian file (the module needs libcuda.so.1,"
                                           " the host's)")
    assert rows["pkg/err.so"]["host_provided"] is False and "library" not in rows["pkg/err.so"]
    assert "symbol" not in rows["pkg/err.so"]
    assert [(h["module"], h["library"], h.get("static_check")) for h in report["host_provided"]] == [
        ("pkg/host.so", "libcuda.so.1", clean), ("pkg/nostatic.so", "libcuda.so.1", None)]
    assert all(h["host_provided"] for h in report["host_provided"])
    # a module outside every site folder keeps its full path
    outside = abi_script.verdict(["/else/x.so"], {"/else/x.so": "undefined symbol: y"}, {}, {},
                                 ["/site"])
    assert [r["module"] for r in outside["failures"]] == ["/else/x.so"]


def test_a_module_is_named_below_its_site_folder_and_its_package_found() -> None:
    dirs = ["/a/site-packages", "/b"]
    assert abi_script.relative("/b/pkg/x.so", dirs) == "pkg/x.so"
    assert abi_script.relative("/bee/pkg/x.so", dirs) is None
    assert abi_script.relative("/b", dirs) is None
    assert abi_script.top_package("/a/site-packages/torch/lib/libc10.so", dirs) == "torch"
    assert abi_script.top_package("/b/_cffi_backend.cpython-311-x86_64-linux-gnu.so", dirs) == (
        "_cffi_backend")
    assert abi_script.top_package("/b/numpy.libs/libx.so", dirs) is None
    assert abi_script.top_package("/c/pkg/x.so", dirs) is None
    assert abi_script.canon("Foo_Bar.baz--q") == "foo-bar-baz-q"
    crash = abi_script.classify("/b/x.so", "crashed while loading (exit -6)", "d")
    assert crash == {"module": "/b/x.so", "dist": "d", "error": "crashed while loading (exit -6)"}
    long = abi_script.classify("/b/x.so", "/b/x.so: " + "e" * 500, None)
    assert long["error"] == "e" * 400


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dependency graphs the static check must walk as ld.so does: a diamond whose shared
    need is missing, a need found only through what is loaded, a file that is not ELF, a
    library whose own RUNPATH ($ORIGIN) finds what it needs, one that needs libc."""
    root = tmp_path_factory.mktemp("graph")
    lib = root / "lib"
    (lib / "sub").mkdir(parents=True)

    def so(name: str, code: str, *link: str, folder: Path = lib) -> Path:
        (root / "src.c").write_text(code + "\n")
        out = folder / name
        gcc("-o", str(out), str(root / "src.c"), f"-Wl,-soname,{name}", f"-L{lib}",
            f"-L{lib / 'sub'}", *link)
        return out

    so("libnot.so.1", "int nt(void) { return 0; }")
    so("libnot2.so.1", "int nt2(void) { return 0; }")
    so("liba.so.1", "extern int nt(void); int fa(void) { return nt(); }", "-l:libnot.so.1")
    so("libb.so.1", "extern int nt(void); int fb(void) { return nt(); }", "-l:libnot.so.1")
    so("libdeep.so.1", "int dp(void) { return 0; }", folder=lib / "sub")
    so("libr.so.1", "extern int dp(void); int fr(void) { return dp(); }", "-l:libdeep.so.1",
       "-Wl,--enable-new-dtags,-rpath,$ORIGIN/sub")
    so("libtext.so.1", "int tx(void) { return 0; }")
    rpath = "-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib"
    so("diamond.so", "extern int nt2(void), fa(void), fb(void);"
       " int d(void) { return nt2() + fa() + fb(); }",
       "-l:libnot2.so.1", "-l:liba.so.1", "-l:libb.so.1", rpath, folder=root)
    so("text.so", "extern int nt2(void), tx(void); int t(void) { return nt2() + tx(); }",
       "-l:libnot2.so.1", "-l:libtext.so.1", rpath, folder=root)
    so("deep.so", "extern int fr(void); int e(void) { return fr(); }", "-l:libr.so.1", rpath,
       folder=root)
    so("libc_user.so", "#include <stdio.h>\nint u(void) { return puts(\"x\"); }", folder=root)
    (lib / "libnot.so.1").unlink()
    (lib / "libnot2.so.1").unlink()
    (lib / "libtext.so.1").write_text("/* GNU ld script */\nINPUT(libtext.so.0)\n")
    return root


def test_the_static_check_walks_each_library_once_and_all_of_them(graph: Path) -> None:
    # liba and libb both need the missing libnot: named once; libnot2 still reached
    assert abi_script.static_check(str(graph / "diamond.so"), {}, {}) == {
        "unresolved": ["nt2"], "needs_host": [], "missing": ["libnot.so.1", "libnot2.so.1"],
        "symbols": 3}
    # a file that is not ELF is passed over, not the end of the walk
    assert abi_script.static_check(str(graph / "text.so"), {}, {})["missing"] == ["libnot2.so.1"]
    # a library's own RUNPATH ($ORIGIN/sub) finds what it needs
    assert abi_script.static_check(str(graph / "deep.so"), {}, {}) == {
        "unresolved": [], "needs_host": [], "missing": [], "symbols": 1}
    # libc from the system folders (no ld.so.cache given), its symbols defined
    assert abi_script.static_check(str(graph / "libc_user.so"), {}, {}) == {
        "unresolved": [], "needs_host": [], "missing": [], "symbols": 1}


def test_a_need_already_loaded_is_found(driver_linked: Path) -> None:
    gone = str(driver_linked / "gone" / "driver_gone.so")
    loaded = {"libgone.so.1": str(driver_linked / "libs" / "libgone.so.1")}
    assert abi_script.static_check(gone, loaded, {})["missing"] == []


def test_ld_library_path_is_searched_folder_by_folder(vendored: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blas = str(vendored / "plain" / "libblas-3c.so")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/nonexistent:{vendored / 'plain'}")
    assert abi_script.static_check(blas, {}, {})["missing"] == []


def test_search_paths_expand_origin_and_a_runpath_replaces_every_rpath() -> None:
    assert abi_script.search_paths(["${ORIGIN}/x", "$ORIGIN/y", "", "/abs"], [], "/o",
                                   ["/c"]) == (["/o/x", "/o/y", "/abs", "/c"], [])
    assert abi_script.search_paths(["/r"], ["$ORIGIN", "${ORIGIN}/z"], "/o", ["/c"]) == (
        [], ["/o", "/o/z"])
