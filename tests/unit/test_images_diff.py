"""The package comparison behind `images diff`, on manifests as smoke tests record them."""

from __future__ import annotations

import json

from basefactory.images.diff import compare, packages, summary
from basefactory.refs import LABEL


def test_added_removed_and_changed_packages() -> None:
    a = packages({f"{LABEL}.manifest": json.dumps([
        {"name": "six", "version": "1.16.0", "size": 100},
        {"name": "NumPy", "version": "2.3.0", "size": 1000},
        {"name": "gone", "version": "1", "size": 7}])})
    b = packages({f"{LABEL}.manifest": json.dumps([
        {"name": "six", "version": "1.16.0", "size": 100},
        {"name": "numpy", "version": "2.3.1", "size": 1200},
        {"name": "new", "version": "0.1", "size": 5}])})
    found = compare(a, b)
    assert found["added"] == [{"name": "new", "version": "0.1", "size": 5}]
    assert found["removed"] == [{"name": "gone", "version": "1", "size": 7}]
    assert found["changed"] == [{"name": "numpy", "from": "2.3.0", "to": "2.3.1",
                                 "size_delta": 200}]
    assert compare(a, a) == {"added": [], "removed": [], "changed": []}


def test_a_missing_or_broken_manifest_label_is_no_packages() -> None:
    assert packages({}) == {}
    assert packages({f"{LABEL}.manifest": "{not json"}) == {}


def test_the_upgrade_summary_names_each_version_change() -> None:
    changes = compare({"numpy": {"version": "2.3.0", "size": 1}, "gone": {"version": "1", "size": 1}},
                      {"numpy": {"version": "2.3.1", "size": 1}, "new": {"version": "0.1", "size": 1}})
    assert summary(changes) == ["+ new 0.1", "- gone 1", "~ numpy 2.3.0 -> 2.3.1"]
    assert summary(compare({}, {})) == ["no package changes"]


def test_outdated_compares_final_releases_by_their_public_version() -> None:
    from packaging.version import Version

    from basefactory.images.outdated import _newest, _public

    assert _newest({"1.0", "1.2rc1", "1.1", "2.0.dev1", "junk"}) == Version("1.1")
    assert _newest(set()) is None
    # a factory wheel's local label (+cpu.torch213) is not a newer release
    assert _public("0.2.1+cpu.torch213") == Version("0.2.1")
    assert not Version("0.2.1") > _public("0.2.1+cpu.torch213")
