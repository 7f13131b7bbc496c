"""index/layout.py and daemons/credentials.py without devpi: the indexes a factory wants
(names from the configured user, their bases and who may upload), and where each secret
comes from."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from basefactory.daemons.credentials import index_password, registry_auth, root_password
from basefactory.index.layout import _wanted
from basefactory.plumbing.errors import ConfigError
from basefactory.refs import base_pins_index, common_index, platform_index, staging_index
from tests.helpers import small_factory

TWO_PLATFORMS = ('[platforms.p1]\nimage = "example.invalid/pytorch:1"\n'
                 '[platforms.p2]\nimage = "example.invalid/pytorch:2"\ndescription = "the second"\n')


def test_the_indexes_follow_the_configured_user_and_inherit_in_a_chain(tmp_path: Path) -> None:
    f = small_factory(tmp_path, '[index]\nuser = "acme"\ncommon = "pure"\nmirror = "root/pypi"\n',
                      platforms=TWO_PLATFORMS)
    assert common_index(f) == "acme/pure"
    assert platform_index(f, "p1") == "acme/p1" and staging_index(f) == "acme/staging"
    wanted = _wanted(f)
    assert set(wanted) == {"acme/pure", "acme/staging", "acme/p1", "acme/p2", "acme/p1-base",
                           "acme/p2-base"}
    # a platform's index sees its base's pins first (so devpi hides the mirror's other
    # releases of them), then the common one, which sees PyPI; nothing inherits staging
    assert wanted["acme/p1"]["bases"] == ["acme/p1-base", "acme/pure"]
    assert base_pins_index(f, "p1") == "acme/p1-base" and wanted["acme/p1-base"]["bases"] == []
    # the pins index is made before the index that inherits it
    assert list(wanted).index("acme/p1-base") < list(wanted).index("acme/p1")
    assert wanted["acme/pure"]["bases"] == ["root/pypi"]
    assert wanted["acme/staging"]["bases"] == []
    assert not any("acme/staging" in w["bases"] for w in wanted.values())
    # only the factory user uploads files or test records; published files never change
    for name, settings in wanted.items():
        assert settings["acl_upload"] == ["acme"] and settings["acl_toxresult_upload"] == ["acme"]
        # the pins are rewritten when the base changes
        assert settings["volatile"] is (name == "acme/staging" or name.endswith("-base"))
    assert wanted["acme/p2"]["title"] == "the second"
    assert wanted["acme/p1"]["title"] == "wheels built against platform p1"


def test_secrets_are_generated_once_private_and_the_environment_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASEFACTORY_INDEX_PASSWORD", raising=False)
    monkeypatch.delenv("BASEFACTORY_REGISTRY_PASSWORD", raising=False)
    f = small_factory(tmp_path)
    first = index_password(f)
    assert len(first) >= 32 and index_password(f) == first
    secret = f.state_dir / "secrets" / "index-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert root_password(f) != first
    user, password = registry_auth(f)  # type: ignore[misc]
    assert user and password not in (first, root_password(f))
    monkeypatch.setenv("BASEFACTORY_INDEX_PASSWORD", "from-env")
    assert index_password(f) == "from-env"


def test_an_external_index_without_a_password_says_where_to_put_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASEFACTORY_INDEX_PASSWORD", raising=False)
    f = small_factory(tmp_path, '[index]\nembedded = false\nurl = "http://devpi.example:3141"\n')
    with pytest.raises(ConfigError) as caught:
        index_password(f)
    assert "no password for index user `factory` at http://devpi.example:3141" in str(caught.value)
    assert "BASEFACTORY_INDEX_PASSWORD" in caught.value.hint
    assert not (f.state_dir / "secrets" / "index-password").exists()  # nothing made up


def test_an_external_registry_without_a_password_is_anonymous(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASEFACTORY_REGISTRY_PASSWORD", raising=False)
    f = small_factory(tmp_path, '[registry]\nembedded = false\nurl = "http://registry.example:5000"\n')
    assert registry_auth(f) is None
    monkeypatch.setenv("BASEFACTORY_REGISTRY_PASSWORD", "pw")
    assert registry_auth(f) == (f.config.registry.user, "pw")
