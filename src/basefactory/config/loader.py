"""The one loader every TOML input goes through (factory.toml, recipes, image
definitions): `load_toml` turns a read error, a TOML syntax error or a pydantic
ValidationError into one ConfigError that names the file, the line where it can find it,
the field, the bad value and the fix."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ValidationError,
)

from basefactory.plumbing.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", hint="create it, or pass --config PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", hint="check the file's permissions") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_message(exc)}", hint=_toml_hint(str(exc))) from None


def load_toml(path: Path, model: type[M], *, context: Mapping[str, Any] | None = None) -> M:
    data, text = read_toml(path)
    return validate(path, text, data, model, context=context)


def validate(
    path: Path,
    text: str,
    data: dict[str, Any],
    model: type[M],
    *,
    context: Mapping[str, Any] | None = None,
) -> M:
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        raise _config_error(path, text, model, exc) from None


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    if m:
        body = msg[: m.start()].strip()
        return f"line {m.group(1)}, column {m.group(2)}: TOML syntax error: {body}"
    return f"TOML syntax error: {msg}"


def _toml_hint(msg: str) -> str:
    if "declare" in msg and "twice" in msg:
        return "each table and key may appear once: merge or rename the duplicate"
    if "Invalid value" in msg:
        return "strings need quotes, e.g. key = \"value\""
    return "see https://toml.io for the syntax"


def _config_error(path: Path, text: str, model: type[BaseModel], exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(str(p) for p in err["loc"])
    field = ".".join(loc) if loc else "(top level)"
    line = _locate(text, loc)
    where = f"{path}:{line}" if line else str(path)
    kind = err["type"]
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    hint: str | None
    if kind == "extra_forbidden":
        valid = _valid_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = (
            f"did you mean `{close[0]}`?"
            if close
            else f"valid keys here: {', '.join(sorted(valid))}" if valid else "remove it"
        )
        return ConfigError(f"{where}: unknown key `{field}`{more}", hint=hint)
    if kind == "missing":
        table = ".".join(loc[:-1])
        return ConfigError(
            f"{where}: missing required field `{field}`{more}",
            hint=f"add `{loc[-1]} = ...` to {'[' + table + ']' if table else 'the top level'}",
        )
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    message = err["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and loc and loc[-1] not in ("torch",):
        message = f"{shown} is not allowed here ({message})"
        hint = "use lowercase letters, digits, '.', '_' and '-'"
    elif kind == "value_error":
        hint = None
    else:
        message = f"{message}, got {shown}"
        hint = _example(model, loc)
    return ConfigError(f"{where}: {field}: {message}{more}", hint=hint)


def _example(model: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    """`key = <default>` for the field at `loc`, as a model of a valid value."""
    if not loc:
        return None
    owner = _model_at(model, loc[:-1])
    field = owner.model_fields.get(loc[-1]) if owner is not None else None
    if field is None or field.default is None or field.is_required():
        return None
    default = field.default
    if isinstance(default, BaseModel):
        return None
    rendered = (str(default).lower() if isinstance(default, bool) else
                str(default) if isinstance(default, int) else f'"{default}"')
    return f"e.g. {loc[-1]} = {rendered}"


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            continue  # a dict's key (e.g. a platform name): stay on the dict's value type
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _valid_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys a table at `loc` accepts, walking the model tree (dict values included)."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(args):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _locate(text: str, loc: tuple[str, ...]) -> int | None:
    """Best effort: the line number of the key `loc` names, or of its table."""
    lines = text.splitlines()
    keys = [k for k in loc if not k.isdigit()]
    best: int | None = None
    for depth in range(len(keys), 0, -1):
        table, key = keys[: depth - 1], keys[depth - 1]
        start = 0
        if table:
            header = _find_header(lines, table)
            if header is None:
                continue
            start = header + 1
        for i in range(start, len(lines)):
            stripped = lines[i].strip()
            if stripped.startswith("[") and i > start - 1 and table:
                break
            if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", lines[i]):
                return i + 1
        header = _find_header(lines, keys[:depth])
        if header is not None:
            return header + 1
    return best


def _find_header(lines: list[str], table: list[str]) -> int | None:
    wanted = ".".join(table)
    for i, line in enumerate(lines):
        m = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]+", line)
        if m and m.group(1).replace('"', "").replace(" ", "") == wanted:
            return i
    return None


# --- the factory --------------------------------------------------------------------------
