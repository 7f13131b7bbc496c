"""Jinja2 rendering of the Dockerfiles the factory builds (package templates or overrides)."""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any

import jinja2

from basefactory.plumbing.errors import ConfigError


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("basefactory", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Dockerfiles, not HTML  # noqa: S701
    )
    # `sh`: one shell word (RUN lines); `dq`: a double-quoted string (ENV, LABEL values).
    # Not jinja's tojson, which escapes < > & for HTML and breaks `pkg>=1`.
    env.filters["sh"] = shlex.quote
    env.filters["dq"] = lambda value: json.dumps(str(value))
    return env


def render(name: str, **context: Any) -> str:
    # index_ca: the index is https with a CA of its own (the build mounts the secret)
    context.setdefault("index_ca", False)
    return _env().get_template(name).render(**context)


def render_file(path: Path, **context: Any) -> str:
    """Render a user's template (e.g. images/<name>/Dockerfile.j2), with clear errors."""
    # its own folder first, then the package's templates (for {% include "image.Dockerfile.j2" %})
    env = _env().overlay(loader=jinja2.ChoiceLoader([
        jinja2.FileSystemLoader([str(path.parent)]), jinja2.PackageLoader("basefactory", "templates")]))
    context.setdefault("index_ca", False)
    try:
        return env.get_template(path.name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{path}: {exc.message}",
                          hint="the template may use only the documented variables") from None
