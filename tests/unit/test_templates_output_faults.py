"""plumbing/templates.py, plumbing/output.py and plumbing/faults.py: Dockerfile rendering
(quoting that survives `pkg>=1`, errors naming the file and line), sizes for people, and a
failpoint that kills exactly like `kill -9` and is inert otherwise."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.plumbing import output
from basefactory.plumbing.errors import ConfigError
from basefactory.plumbing.faults import ENV
from basefactory.plumbing.templates import render_file


def test_filters_quote_for_the_shell_and_for_double_quoted_values(tmp_path: Path) -> None:
    template = tmp_path / "Dockerfile.j2"
    template.write_text('RUN pip install {{ pin | sh }}\nLABEL x={{ label | dq }}\n')
    text = render_file(template, pin="numpy>=1.26,<2", label='say "hi" <now>')
    assert text == "RUN pip install 'numpy>=1.26,<2'\nLABEL x=\"say \\\"hi\\\" <now>\"\n"


def test_a_template_error_names_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile.j2"
    broken.write_text("FROM x\nRUN {% if %}\n")
    with pytest.raises(ConfigError, match=rf"{broken}:2: template syntax error"):
        render_file(broken)
    unknown = tmp_path / "other.j2"
    unknown.write_text("FROM {{ no_such_variable }}\n")
    with pytest.raises(ConfigError) as caught:
        render_file(unknown)
    assert "no_such_variable" in str(caught.value) and "documented variables" in caught.value.hint


def test_a_users_template_includes_the_packages_own(tmp_path: Path) -> None:
    (tmp_path / "part.j2").write_text("RUN echo {{ word }}\n")
    main = tmp_path / "Dockerfile.j2"
    main.write_text('FROM base\n{% include "part.j2" %}')
    assert render_file(main, word="hello") == "FROM base\nRUN echo hello\n"


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (139_030_000, "139.0 MB"),
    (2_880_750_000, "2.9 GB"), (4.2e12, "4.2 TB")])
def test_sizes_read_in_decimal_units(size: float, text: str) -> None:
    assert output.human_size(size) == text


def test_a_failpoint_kills_only_when_named() -> None:
    code = ("from basefactory.plumbing.faults import checkpoint\n"
            "checkpoint('image:during-push'); print('went on')")
    named = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", ENV: "image:during-push"})
    assert named.returncode == -signal.SIGKILL and "went on" not in named.stdout
    assert "failpoint image:during-push: SIGKILL" in named.stderr
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", ENV: "wheel:after-upload"})
    assert other.returncode == 0 and other.stdout.strip() == "went on"
