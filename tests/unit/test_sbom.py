"""The SBOM writer: the inventory script (run here, on this machine's Python and dpkg, as
it runs inside an image), the CycloneDX document it becomes, and the schema check that
refuses a broken one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from basefactory.images import referrers, sbom
from basefactory.images.sbom import FactoryWheel, Inventory
from basefactory.plumbing.errors import BuildError
from basefactory.refs import LABEL

LABELS = {
    "org.opencontainers.image.description": "TTS stack",
    "org.opencontainers.image.base.name": "127.0.0.1:5000/factory/cuda-deps:p",
    "org.opencontainers.image.base.digest": "sha256:" + "b" * 64,
    f"{LABEL}.input-digest": "c" * 64,
    f"{LABEL}.fingerprint": json.dumps({"python": "3.11.7", "torch": "2.13.0+cpu"}),
}


def _inventory() -> Inventory:
    return Inventory(
        python=[
            {"name": "torch", "version": "2.13.0+cpu", "license_expression": "BSD-3-Clause",
             "license": "", "license_classifiers": [], "build": ""},
            {"name": "Monotonic_Alignment_Search", "version": "0.2.1+cpu.torch213",
             "license_expression": "", "license": "MIT", "license_classifiers": [],
             "build": "1764000000-abcdef012345"},
            {"name": "soundfile", "version": "0.13.1", "license_expression": "",
             "license": "", "license_classifiers": ["BSD License"], "build": ""},
            {"name": "mystery", "version": "1.0", "license_expression": "", "license": "",
             "license_classifiers": [], "build": ""},
            {"name": "dual", "version": "2.0", "license_expression": "MIT OR Apache-2.0",
             "license": "", "license_classifiers": ["MIT License"], "build": ""}],
        debian=[{"name": "libsndfile1", "version": "1.2.0-1", "arch": "amd64",
                 "source": "libsndfile"}],
        os={"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm",
            "PRETTY_NAME": "Debian GNU/Linux 12"})


def _components(text: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(text)["components"]}


def test_document_names_every_package_with_purl_license_and_the_factory_pin() -> None:
    wheel = FactoryWheel("monotonic_alignment_search-0.2.1+cpu.torch213-1764000000abcdef012345"
                         "-cp311-cp311-linux_x86_64.whl", "a" * 64, "monotonic-align",
                         "sdist https://files.example/mas-0.2.1.tar.gz sha256:" + "d" * 64)
    text = sbom.document(_inventory(), image="tts-deps", platform="cpu-py311-torch2.13",
                         tag="cpu-py311-torch2.13-20261124-0123456789ab", labels=LABELS,
                         wheels={"monotonic-alignment-search": wheel})
    data = json.loads(text)
    assert data["bomFormat"] == "CycloneDX" and data["specVersion"] == "1.6"
    root = data["metadata"]["component"]
    assert root["type"] == "container" and root["name"] == "tts-deps"
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert props["basefactory:base-digest"] == "sha256:" + "b" * 64
    assert json.loads(props["basefactory:fingerprint"])["torch"] == "2.13.0+cpu"
    found = _components(text)
    assert found["torch"]["purl"] == "pkg:pypi/torch@2.13.0%2Bcpu"
    assert found["torch"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert "hashes" not in found["torch"]  # not from the factory's index: no file to name
    mas = found["Monotonic_Alignment_Search"]
    assert mas["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    mas_props = {p["name"]: p["value"] for p in mas["properties"]}
    assert mas_props["basefactory:recipe"] == "monotonic-align"
    assert mas_props["basefactory:source"].startswith("sdist https://files.example/")
    assert mas["licenses"] == [{"license": {"id": "MIT"}}]
    assert found["soundfile"]["licenses"] == [{"license": {"name": "BSD License"}}]
    assert "licenses" not in found["mystery"]
    assert found["dual"]["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert found["libsndfile1"]["purl"] == \
        "pkg:deb/debian/libsndfile1@1.2.0-1?arch=amd64&distro=bookworm"
    counts = sbom.summary(text)
    assert counts == {"spec_version": "1.6", "components": 6, "python": 5, "debian": 1,
                      "factory_wheels": 1}


def test_a_document_that_breaks_the_schema_is_refused() -> None:
    text = sbom.document(_inventory(), image="x", platform="p", tag="t", labels={}, wheels={})
    sbom.validate(text, where="ok")  # the writer's own output passes
    broken = json.loads(text)
    broken["components"][0]["type"] = "not-a-component-type"
    with pytest.raises(BuildError, match="not valid CycloneDX 1.6"):
        sbom.validate(json.dumps(broken), where="the SBOM of x:t")


def test_inventory_script_reads_a_real_python_and_dpkg() -> None:
    """The script as the container runs it, here on this machine: its output makes a
    valid document listing this venv's packages and the host's Debian packages."""
    out = subprocess.run([sys.executable, str(sbom.SCRIPT)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    data = json.loads(out)
    names = {r["name"].lower() for r in data["python"]}
    assert {"cyclonedx-python-lib", "pydantic", "fastapi"} <= names
    assert data["debian"] and any(r["name"] == "dpkg" for r in data["debian"])
    assert data["os"]["ID"]
    text = sbom.document(Inventory(data["python"], data["debian"], data["os"]),
                         image="host", platform="p", tag="t", labels={}, wheels={})
    assert sbom.summary(text)["components"] == len(data["python"]) + len(data["debian"])


def test_referrers_tag_is_the_distribution_spec_fallback() -> None:
    assert referrers.tag("sha256:" + "e" * 64) == "sha256-" + "e" * 64
