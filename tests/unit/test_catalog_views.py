"""The catalog's views over a snapshot: pure logic, no services."""

from __future__ import annotations

from dataclasses import replace

import pytest

from basefactory.catalog import views
from basefactory.catalog.snapshot import ImageCell, Snapshot, Tag, Wheel
from basefactory.proofs import Kind, Proof, Subject

P = "cpu-py311-torch2.13"


def proof_of_test(url: str, passed: bool = True) -> list[Proof]:
    return [Proof(Kind.WHEEL_TEST, Subject(platform=P, wheel="w.whl"), "s", passed,
                  {"command": "python -c pass"}, "2026-11-23T00:00:00", source=url)]


def cell(image: str, parent: str, wheels: dict[str, str] | None = None) -> ImageCell:
    tag = f"{P}-20261123-abcdefabcdef"
    subject = Subject(platform=P, image=image)
    return ImageCell(image=image, platform=P, ref=f"reg:5000/factory/{image}:{P}", current=tag,
                     date="2026-11-23", digest="sha256:1", size=1000, parent=parent,
                     description=f"{image} image", wheels=wheels or {}, manifest=[],
                     # the files built in: the fixture's wheels all have sha256 "s"
                     wheel_files={name: "s" for name in wheels or {}},
                     proofs=[Proof(Kind.SMOKE, subject, "d", True,
                                   {"imported": [image]}, "2026-11-23T00:00:00"),
                             Proof(Kind.ABI_AUDIT, subject, "d", True,
                                   {"modules": 30, "failures": []}, "2026-11-23T00:00:00")],
                     input_digest="d", created="2026-11-23T00:00:00",
                     tags=[Tag(tag, "2026-11-23", "sha256:1")])


def snapshot() -> Snapshot:
    return Snapshot(
        taken_at="now", registry="reg:5000", index="http://idx:3141",
        platforms={P: {"torch": "2.13.0+cpu", "python": "3.11.2", "cuda": None},
                   "gpu": {}},
        images={"cuda-deps": {P: cell("cuda-deps", "platform")},
                "tts-deps": {P: cell("tts-deps", "cuda-deps", {"monotonic-alignment-search":
                                                               "0.2.1+pt213cpu"})}},
        wheels=[
            Wheel(f"factory/{P}", P, "monotonic-alignment-search", "0.2.1+pt213cpu", "m.whl",
                  "u", "s", proof_of_test("http://idx/t1")),
            Wheel("factory/common", None, "openai-whisper", "20250625", "w.whl", "u", "s",
                  proof_of_test("http://idx/t2")),
            Wheel("factory/gpu", "gpu", "torchsort", "0.1.10+pt214cu130", "t.whl", "u", "s",
                  proof_of_test("http://idx/t3")),
            Wheel(f"factory/{P}", P, "untested", "1.0", "x.whl", "u", "s", []),
            Wheel(f"factory/{P}", P, "failed", "1.0", "f.whl", "u", "s",
                  proof_of_test("http://idx/t4", passed=False)),
        ],
        errors=[],
        # the inputs a fit record of (image digest, wheel sha256) must have today
        fit_inputs={"sha256:1 s": "i"},
    )


def test_combos_for_an_image_lists_wheels_of_its_platform_and_pure_ones() -> None:
    data = views.combos(snapshot(), "tts-deps", None)
    by_wheel = {c["wheel"]: c for c in data["combos"]}
    assert set(by_wheel) == {"monotonic-alignment-search", "openai-whisper"}  # not gpu, not untested
    assert by_wheel["monotonic-alignment-search"]["included"] is True
    assert by_wheel["openai-whisper"]["included"] is False
    mas, whisper = by_wheel["monotonic-alignment-search"], by_wheel["openai-whisper"]
    # included: the image's smoke test imported it and its ABI audit loaded its modules
    here = f"/api/images/tts-deps/platforms/{P}"
    assert mas["fits"] is True and mas["proven_by"] == {
        "wheel_test": "http://idx/t1", "image_smoke": here, "image_abi_audit": here}
    # same platform, built against its torch, but nothing installed it in this image
    assert whisper["fits"] is None and whisper["proven_by"] is None
    assert whisper["reason"].startswith("not tested")


def test_combos_for_a_wheel_lists_images_it_fits() -> None:
    data = views.combos(snapshot(), None, "Monotonic_Alignment.Search")
    assert {c["image"] for c in data["combos"]} == {"cuda-deps", "tts-deps"}
    assert views.combos(snapshot(), None, "torchsort")["combos"] == []  # only on `gpu`
    assert views.combos(snapshot(), "cuda-deps", "torchsort")["fits"] is None  # no pair at all
    assert views.combos(snapshot(), "cuda-deps", "torchsort")["combos"] == []
    assert views.combos(snapshot(), "tts-deps", "openai-whisper")["fits"] is None  # not tested
    assert views.combos(snapshot(), "tts-deps", "monotonic-alignment-search")["fits"] is True


def test_an_included_wheel_of_another_file_is_not_proven() -> None:
    """Included is the file built in, by sha256: another version, or the same version
    rebuilt with a new build tag (another file), was not in the image's tests."""
    s = snapshot()
    cell = s.images["tts-deps"][P]
    for files in ({"monotonic-alignment-search": "sha-of-the-older-build"}, {}):
        s.images["tts-deps"][P] = ImageCell(**{**cell.__dict__, "wheel_files": files})
        (pair,) = views.combos(s, "tts-deps", "monotonic-alignment-search")["combos"]
        assert pair["included"] is False and pair["fits"] is None


def test_an_included_wheel_needs_the_images_smoke_test_and_abi_audit() -> None:
    s = snapshot()
    cell = s.images["tts-deps"][P]
    for kind in (Kind.SMOKE, Kind.ABI_AUDIT):
        kept = [p for p in cell.proofs if p.kind != kind]
        failed = [Proof(p.kind, p.subject, p.inputs, False, p.evidence, p.at)
                  for p in cell.proofs if p.kind == kind]
        for proofs in (kept, kept + failed):
            s.images["tts-deps"][P] = ImageCell(**{**cell.__dict__, "proofs": proofs})
            (pair,) = views.combos(s, "tts-deps", "monotonic-alignment-search")["combos"]
            assert pair["fits"] is None, (kind, pair)


@pytest.mark.parametrize(("image", "wheel", "error"), [
    (None, None, views.BadRequest), ("nope", None, views.NotFound), (None, "nope", views.NotFound),
])
def test_combos_errors(image: str | None, wheel: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        views.combos(snapshot(), image, wheel)


def test_image_view_has_the_parent_chain_and_snippets() -> None:
    data = views.image(snapshot(), "tts-deps")["platforms"][P]
    assert data["chain"] == ["tts-deps", "cuda-deps", f"platform:{P}"]
    assert data["from"] == f"FROM reg:5000/factory/tts-deps:{P}"
    assert data["from_pinned"].endswith(f"tts-deps:{P}-20261123-abcdefabcdef")
    with pytest.raises(views.NotFound):
        views.image(snapshot(), "missing")
    with pytest.raises(views.NotFound):
        views.image_on(snapshot(), "tts-deps", "gpu")


def test_platform_view() -> None:
    data = views.platform(snapshot(), P)
    assert data["torch"] == "2.13.0+cpu" and data["index_url"] == f"http://idx:3141/factory/{P}/+simple/"
    assert {w["project"] for w in data["wheels"]} == {"monotonic-alignment-search",
                                                      "openai-whisper", "untested", "failed"}
    tested = {w["project"]: w["tested"] for w in data["wheels"]}
    assert tested == {"monotonic-alignment-search": True, "openai-whisper": True,
                      "untested": False, "failed": False}  # a failed record proves nothing
    assert views.platforms(snapshot())[1]["probed"] is False
    with pytest.raises(views.NotFound):
        views.platform(snapshot(), "nope")


def test_overview_rows_follow_platform_columns() -> None:
    data = views.overview(snapshot())
    assert data["platforms"] == [P, "gpu"]
    tts = next(r for r in data["rows"] if r["image"] == "tts-deps")
    assert tts["cells"][0]["tag"].startswith(P) and tts["cells"][1] is None


def test_the_newest_wheel_test_decides_tested_and_its_link() -> None:
    older = proof_of_test("http://idx/old")[0]
    newer = proof_of_test("http://idx/new", passed=False)[0]
    newer = Proof(newer.kind, newer.subject, newer.inputs, False, {}, "2026-11-24T00:00:00",
                  source="http://idx/new")
    row = views.wheel_row(snapshot(), Wheel(f"factory/{P}", P, "x", "1.0", "x.whl", "u", "s",
                                            [older, newer]))
    assert row["tested"] is False and row["proven_by"] == []  # no link to the older pass
    row = views.wheel_row(snapshot(), Wheel(f"factory/{P}", P, "x", "1.0", "x.whl", "u", "s",
                                            [older]))
    assert row["tested"] is True and row["proven_by"] == ["http://idx/old"]


def fit_proof(image: str, digest: str, passed: bool, reason: str, url: str) -> Proof:
    return Proof(Kind.FIT, Subject(platform=P, wheel="w.whl", wheel_sha256="s", image=image,
                                   image_digest=digest), "i", passed,
                 {"reason": reason, "added": [{"name": "x", "version": "1", "mb": 1.0}],
                  "added_mb": 1.0}, "2026-11-24T00:00:00", source=url)


def with_fits(*proofs: Proof) -> Snapshot:
    s = snapshot()
    whisper = next(w for w in s.wheels if w.project == "openai-whisper")
    s.wheels[s.wheels.index(whisper)] = Wheel(**{**whisper.__dict__,
                                                "proofs": whisper.proofs + list(proofs)})
    return s


def test_a_fit_record_of_this_image_build_decides_the_pair() -> None:
    s = with_fits(fit_proof("cuda-deps", "sha256:1", True, "installs cleanly", "http://idx/f1"),
                  fit_proof("tts-deps", "sha256:1", False, "replaces numpy 1 -> 2",
                            "http://idx/f2"))
    cuda = views.combos(s, "cuda-deps", "openai-whisper")
    assert cuda["fits"] is True
    (pair,) = cuda["combos"]
    assert pair["proven_by"] == {"fit": "http://idx/f1", "wheel_test": "http://idx/t2"}
    assert pair["adds"]["mb"] == 1.0 and pair["reason"] == "installs cleanly"
    assert pair["pip"] == (f"pip install --index-url http://idx:3141/factory/{P}/+simple/"
                           " openai-whisper==20250625")
    assert 'openai-whisper = { index = "factory-' in pair["uv"]
    tts = views.combos(s, "tts-deps", "openai-whisper")
    assert tts["fits"] is False and tts["combos"][0]["reason"] == "replaces numpy 1 -> 2"
    assert tts["combos"][0]["pip"] is None  # no copy-paste for a pair that does not fit


def test_a_fit_record_of_another_image_build_proves_nothing() -> None:
    s = with_fits(fit_proof("cuda-deps", "sha256:old", True, "installs cleanly", "http://x"))
    (pair,) = views.combos(s, "cuda-deps", "openai-whisper")["combos"]
    assert pair["fits"] is None and pair["reason"].startswith("not tested")


def test_a_fit_record_of_other_inputs_or_another_file_proves_nothing() -> None:
    """A record made under older rules, or before the recipe's test or an allowance
    changed, has other inputs: the pair is "not tested" until a publish refits it. A
    record of another file of the same version (another sha256) is not this file's. And
    where the recipes did not load, no record can be checked, so none counts."""
    stale = fit_proof("cuda-deps", "sha256:1", True, "installs cleanly", "http://x")
    stale = Proof(stale.kind, stale.subject, "inputs-of-rules-1", True, stale.evidence,
                  stale.at, source=stale.source)
    (pair,) = views.combos(with_fits(stale), "cuda-deps", "openai-whisper")["combos"]
    assert pair["fits"] is None and pair["reason"].startswith("not tested as things are now")
    other = fit_proof("cuda-deps", "sha256:1", True, "installs cleanly", "http://x")
    other = Proof(other.kind, replace(other.subject, wheel_sha256="another-build"),
                  other.inputs, True, other.evidence, other.at, source=other.source)
    (pair,) = views.combos(with_fits(other), "cuda-deps", "openai-whisper")["combos"]
    assert pair["fits"] is None and pair["proven_by"] is None
    good = fit_proof("cuda-deps", "sha256:1", True, "installs cleanly", "http://x")
    unchecked = replace(with_fits(good), fit_inputs=None)
    (pair,) = views.combos(unchecked, "cuda-deps", "openai-whisper")["combos"]
    assert pair["fits"] is None


def test_each_verdict_of_a_pair_says_exactly_this() -> None:
    """The four answers a pair can get, whole: what an API client reads field by field."""
    s = snapshot()
    whisper = next(w for w in s.wheels if w.project == "openai-whisper")
    test = whisper.proofs[0]
    cuda = s.images["cuda-deps"][P]
    assert views.fit(cuda, whisper, test, "i") == {
        "included": False, "fits": None,
        "reason": "not tested: no test has installed this wheel in this image build",
        "adds": None, "proven_by": None}
    mas = next(w for w in s.wheels if w.project == "monotonic-alignment-search")
    here = f"/api/images/tts-deps/platforms/{P}"
    assert views.fit(s.images["tts-deps"][P], mas, mas.proofs[0], None) == {
        "included": True, "fits": True,
        "reason": "included in the image: its smoke test imported it and its ABI audit loaded"
                  " every module",
        "adds": None, "proven_by": {"wheel_test": "http://idx/t1", "image_smoke": here,
                                    "image_abi_audit": here}}
    record = fit_proof("cuda-deps", "sha256:1", True, "installs cleanly", "http://idx/f1")
    with_record = replace(whisper, proofs=[test, record])
    assert views.fit(cuda, with_record, test, "i") == {
        "included": False, "fits": True, "reason": "installs cleanly",
        "adds": {"packages": [{"name": "x", "version": "1", "mb": 1.0}], "mb": 1.0},
        "proven_by": {"fit": "http://idx/f1", "wheel_test": "http://idx/t2"}}
    assert views.fit(cuda, with_record, test, "older") == {
        "included": False, "fits": None,
        "reason": "not tested as things are now: its fit record was made under other rules or"
                  " before its recipe's test or an allowance changed (the next publish tests"
                  " it again)", "adds": None, "proven_by": None}
    # a record that names no reason, and one that names no file (an older writer's)
    bare = Proof(Kind.FIT, Subject(platform=P, image="cuda-deps", image_digest="sha256:1"),
                 "i", False, {}, "2026-11-24T00:00:00", source="http://idx/f2")
    verdict = views.fit(cuda, replace(whisper, proofs=[test, bare]), test, "i")
    assert verdict["fits"] is False and verdict["reason"] == ""
    assert verdict["adds"] == {"packages": [], "mb": None}


def test_the_matrix_has_every_image_and_the_newest_tested_wheels() -> None:
    s = with_fits(fit_proof("cuda-deps", "sha256:1", False, "adds torch", "http://idx/f1"))
    m = views.matrix(s, P)
    assert [w["project"] for w in m["wheels"]] == ["monotonic-alignment-search",
                                                   "openai-whisper"]  # untested/failed: out
    cells = {r["image"]: {c["wheel"]: c["fits"] for c in r["cells"]} for r in m["rows"]}
    assert cells == {"cuda-deps": {"monotonic-alignment-search": None, "openai-whisper": False},
                     "tts-deps": {"monotonic-alignment-search": True, "openai-whisper": None}}
    assert views.overview(s)["matrices"][0]["platform"] == P


def test_uv_config_pins_torch_and_the_factorys_wheels_to_the_explicit_index() -> None:
    text = views.platform(snapshot(), P)["uv"]
    assert text.startswith('[[tool.uv.index]]\nname = "factory-' + P + '"\n')
    assert "explicit = true" in text
    assert f'torch = {{ index = "factory-{P}" }}' in text
    assert f'monotonic-alignment-search = {{ index = "factory-{P}" }}' in text
    import tomllib
    parsed = tomllib.loads(text)
    assert parsed["tool"]["uv"]["index"][0]["url"] == f"http://idx:3141/factory/{P}/+simple/"


def test_the_image_view_gives_the_from_line_by_digest() -> None:
    data = views.image(snapshot(), "tts-deps")["platforms"][P]
    assert data["from_digest"] == "FROM reg:5000/factory/tts-deps@sha256:1"


def test_an_adopted_wheel_shows_its_file_and_overrides() -> None:
    adopted = {"wheel": "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl", "sha256": "a" * 64,
               "overrides": [{"requirement": "torch==2.14.0", "replace": "torch==2.14.1",
                              "reason": "a patch release"},
                             {"requirement": "torchaudio==2.11.0", "replace": None,
                              "reason": "does not load with torch 2.14"}],
               "patches": [{"file": "patches/v/fix.patch", "sha256": "b" * 64,
                            "files": ["vllm/x.py"], "reason": "a wrong flag"}]}
    test = Proof(Kind.WHEEL_TEST, Subject(platform=P, wheel="v.whl"), "s", True,
                 {"adopted": adopted}, "2026-11-24T00:00:00", source="http://idx/v")
    row = views.wheel_row(snapshot(), Wheel(f"factory/{P}", P, "vllm", "0.33.0+pt214cu130",
                                            "v.whl", "u", "s", [test]))
    assert row["adopted"]["wheel"].startswith("vllm-0.33.0-")
    assert [o["replace"] for o in row["overrides"]] == ["torch==2.14.1", None]
    assert [p["files"] for p in row["patches"]] == [["vllm/x.py"]]
    built = views.wheel_row(snapshot(), Wheel(f"factory/{P}", P, "x", "1.0", "x.whl", "u", "s",
                                              proof_of_test("http://idx/x")))
    assert built["adopted"] is None and built["overrides"] == [] and built["patches"] == []


def test_compare_only_asks_about_builds_the_snapshot_lists() -> None:
    s = snapshot()
    tag = f"{P}-20261123-abcdefabcdef"
    assert views.tag_platform(s, "tts-deps", tag, tag) == P
    with pytest.raises(views.NotFound, match="no build tagged `latest`"):
        views.tag_platform(s, "tts-deps", tag, "latest")
    with pytest.raises(views.NotFound, match="no image `nope`"):
        views.tag_platform(s, "nope", tag, tag)
    # one build only: nothing to compare, so the image page offers no comparison
    assert views.image(s, "tts-deps")["platforms"][P]["compare"] is None


def test_an_image_without_a_stored_sbom_says_so() -> None:
    s = snapshot()
    assert views.image(s, "tts-deps")["platforms"][P]["sbom"] is None
    with pytest.raises(views.NotFound, match="no SBOM stored"):
        views.sbom_of(s, "tts-deps", P)
    with pytest.raises(views.NotFound, match="not published for platform"):
        views.sbom_of(s, "tts-deps", "gpu")


def test_a_platform_with_nothing_published_has_no_install_line() -> None:
    s = snapshot()
    gpu = next(p for p in views.platforms(s) if p["name"] == "gpu")
    assert gpu["published"] is False and gpu["index_url"] is None and gpu["pip"] is None
    assert views.overview(s)["unpublished"] == ["gpu"]
    data = views.platform(s, "gpu")
    assert data["uv"] is None and data["uv_pip"] is None


def test_a_system_python_platform_gets_uv_pip_install_system() -> None:
    s = snapshot()
    s.platforms["ngc"] = {"torch": "2.13.0a0+cf30153c4c.nv25.10", "in_venv": False,
                          "site_packages": "/usr/local/lib/python3.11/dist-packages",
                          "unindexed": {"torch": "2.13.0a0+cf30153c4c.nv25.10"}}
    data = views.platform(s, "ngc")
    assert data["python_kind"] == "system Python"
    # a pyproject source for torch would point at an index that has no NVIDIA torch
    assert data["uv"] is None
    assert data["uv_pip"] == ("uv pip install --system --index-url"
                              " http://idx:3141/factory/ngc/+simple/ PACKAGE")
    assert views.platform(s, P)["uv"] is not None  # a venv platform keeps its pyproject lines


def test_the_pages_offer_pip_lines_only_for_published_platforms() -> None:
    from fastapi.testclient import TestClient

    from basefactory.catalog.app import create_app
    from basefactory.catalog.state import Catalog

    catalog = Catalog(reader=None)  # type: ignore[arg-type]  # never refreshed here
    catalog.snapshot, catalog.version = snapshot(), 1
    client = TestClient(create_app(catalog))
    page = client.get("/").text
    assert f"/factory/{P}/+simple/" in page and "/factory/gpu/+simple/" not in page
    assert "Declared, nothing published yet" in page
    gpu = client.get("/platforms/gpu").text
    assert "Nothing published for this platform yet" in gpu
    assert "/factory/gpu/+simple/ PACKAGE" not in gpu


def test_a_configured_index_user_names_every_install_line() -> None:
    """[index] user = "acme": the catalog reads acme's indexes, and every pip and uv line,
    on the JSON API and the pages, points at acme's, never at factory's."""
    import json
    from dataclasses import asdict, replace

    from fastapi.testclient import TestClient

    from basefactory.catalog.app import create_app
    from basefactory.catalog.state import Catalog, from_dict

    s = replace(snapshot(), index_user="acme")
    assert views.platform(s, P)["index_url"] == f"http://idx:3141/acme/{P}/+simple/"
    assert all("/factory/" not in (row["pip"] or "") for row in views.platforms(s))
    assert "/acme/" in views.platform(s, P)["uv"] and "/factory/" not in views.platform(s, P)["uv"]
    lines = [row["pip"] for row in views.combos(s, "tts-deps", None)["combos"] if row["pip"]]
    assert lines and all(f"/acme/{P}/+simple/" in line for line in lines)
    catalog = Catalog(reader=None)  # type: ignore[arg-type]  # never refreshed here
    catalog.snapshot, catalog.version = s, 1
    page = TestClient(create_app(catalog)).get("/").text
    assert f"/acme/{P}/+simple/" in page and f"/factory/{P}/+simple/" not in page
    # the user survives the snapshot's persisted copy
    assert from_dict(json.loads(json.dumps(asdict(s)))).index_user == "acme"
