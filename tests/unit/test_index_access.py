"""index/layout.py on a devpi the factory does not run: what an admin must give it is
listed as devpi-client commands, every index with its settings, and factory.toml's TLS and
admin settings are checked where they are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from basefactory.index.layout import needs
from basefactory.plumbing.errors import ConfigError
from tests.helpers import small_factory

EXTERNAL = """[index]
embedded = false
url = "https://devpi.example:8443"
user = "ci-factory"
ca_bundle = "/etc/ssl/company-ca.pem"
"""


def test_the_admin_is_told_every_index_and_right_the_factory_needs(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, EXTERNAL)
    text = needs(factory)
    assert "devpi user -c ci-factory password=…" in text
    assert "--restrict-modify root,ci-factory" in text
    assert "devpi index -c ci-factory/common bases=root/pypi volatile=False" \
        " acl_upload=ci-factory acl_toxresult_upload=ci-factory" in text
    assert "devpi index -c ci-factory/p1 bases=ci-factory/p1-base,ci-factory/common" in text
    assert "devpi index -c ci-factory/p1-base bases= volatile=True" in text
    assert "devpi index -c ci-factory/staging bases= volatile=True" in text
    assert factory.config.index.tls.ca_bundle == Path("/etc/ssl/company-ca.pem")
    assert factory.config.index.tls.setting == "factory.toml [index]"


@pytest.mark.parametrize("extra, words", [
    ('[registry]\nca_bundle = "/ca.pem"\n', "`ca_bundle` is for an https url"),
    ('[registry]\nembedded = false\nurl = "http://r.example"\nclient_cert = "/c.pem"\n',
     "`client_cert` is for an https url"),
    ('[registry]\nembedded = false\nurl = "https://r.example"\nclient_key = "/k.pem"\n',
     "`client_key` needs `client_cert`"),
])
def test_tls_settings_that_cannot_apply_are_refused(tmp_path: Path, extra: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        small_factory(tmp_path, extra)
    assert words in str(caught.value)
    assert "factory.toml" in str(caught.value)
