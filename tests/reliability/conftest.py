"""The reliability suite's tally: failure injections, crashes survived, malformed inputs,
and the things that must stay zero. Printed at the end of the run and written to
tests/artifacts/reliability-report.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

REPORT: Counter[str] = Counter()
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "reliability-report.json"
ZERO = ("partial_publishes", "moved_tags_to_untested_images", "moving_tags_without_sbom",
        "moving_tags_of_bases_not_immutable", "missing_fit_records", "secrets_found")


@pytest.fixture(scope="session")
def tally() -> Counter[str]:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    data = {key: REPORT.get(key, 0) for key in
            ("failure_injections", "crashes_survived", "states_checked",
             "moving_tags_checked", "index_files_checked", "malformed_inputs",
             "canary_secrets_found", *ZERO)}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(data, indent=2) + "\n")
    terminalreporter.section("reliability")
    for key, value in data.items():
        terminalreporter.write_line(f"{key}: {value}")
