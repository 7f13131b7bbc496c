"""`require` is what makes a missing component fail `make test` instead of skipping it:
each branch, broken on purpose."""

from __future__ import annotations

import pytest

from tests.helpers import require


def test_a_missing_promised_component_fails_even_outside_ci(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception, match="missing component: no engine"):
        require(False, "no engine")


def test_an_opt_in_tier_skips_outside_ci_and_fails_under_it(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="opt-in cuda tier"):
        require(False, "no nvcc", tier="cuda")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing component: no nvcc"):
        require(False, "no nvcc", tier="cuda")
    require(True, "present", tier="cuda")  # nothing happens when it is there
