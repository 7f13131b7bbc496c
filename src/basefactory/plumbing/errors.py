"""Every failure a user can cause or fix, each with its own exit code and a next step.

Code below the CLI raises these; `cli.main` prints them as one message and exits with
`exit_code`. A traceback is shown only with `--debug`.
"""

from __future__ import annotations


class BasefactoryError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(BasefactoryError):
    """factory.toml, a recipe or an image definition is malformed or inconsistent."""

    exit_code = 2


class ToolError(BasefactoryError):
    """An external command (docker, devpi, git, uv, ...) is missing or failed."""

    exit_code = 3


class ServiceError(BasefactoryError):
    """A service (engine, index, registry) is down or answered with an error."""

    exit_code = 4


class BuildError(BasefactoryError):
    """A platform, wheel or image build failed; nothing was published."""

    exit_code = 5


class TestFailed(BasefactoryError):
    """A wheel's or image's test failed; nothing was published."""

    exit_code = 6
    __test__ = False  # not a pytest test class


class PublishRefused(BasefactoryError):
    """The index or registry refused to overwrite something already published."""

    exit_code = 7


class WriterBusy(BasefactoryError):
    """Another basefactory run is the factory's writer (holds its flock)."""

    exit_code = 8


class SourceMismatch(BasefactoryError):
    """A recipe's source did not match its sha256 or commit pin."""

    exit_code = 9
