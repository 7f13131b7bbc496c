"""Patches to an adopted wheel's files: unified diffs (as `diff -u` or `git diff` write
them, paths under `a/` and `b/` from the wheel's root), applied with GNU patch before the
wheel is relabelled. Each is declared in the recipe with its reason, digested into the
wheel's inputs and recorded in its test record, as overrides are.

A patch that does not apply exactly (a hunk rejected or offset past its context) is an
error naming the recipe, the patch and patch's own message: it was written for other
files than the pinned wheel's, and nothing is built from it.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from basefactory.adapters import cmd
from basefactory.plumbing.digest import file_sha256
from basefactory.plumbing.errors import BuildError, ConfigError, ToolError
from basefactory.wheels.recipe import Recipe

PATCH_HINT = "install GNU patch (`make setup` does: apt-get install patch)"


def patch_path(recipes_dir: Path, file: Path) -> Path:
    return file if file.is_absolute() else recipes_dir / file


def targets(diff: str) -> list[str]:
    """The wheel paths a unified diff writes (its `+++ b/...` lines)."""
    found = []
    for line in diff.splitlines():
        m = re.match(r"^\+\+\+ (?:b/)?(\S+)", line)
        if m and m.group(1) != "/dev/null":
            found.append(m.group(1))
    return found


def patch_records(recipe: Recipe, recipes_dir: Path) -> list[dict[str, Any]]:
    """The recipe's patches as its test record and the catalog show them."""
    assert recipe.adopt is not None
    records = []
    for p in recipe.adopt.patches:
        path = patch_path(recipes_dir, p.file)
        records.append({"file": str(p.file), "sha256": file_sha256(path),
                        "files": targets(path.read_text()), "reason": p.reason})
    return records


def apply_patches(recipe: Recipe, wheel: Path, recipes_dir: Path) -> dict[str, bytes]:
    """{path in the wheel: patched content}."""
    assert recipe.adopt is not None
    where = f"recipes/{recipe.name}.toml"
    changed: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="basefactory-patch-") as tmp, \
            zipfile.ZipFile(wheel) as zf:
        root = Path(tmp)
        names = set(zf.namelist())
        for i, item in enumerate(recipe.adopt.patches):
            path = patch_path(recipes_dir, item.file)
            if not path.is_file():
                raise ConfigError(f"{where}: adopt.patches[{i}].file: {path} does not exist",
                                  hint="write the patch there, or remove the entry")
            files = targets(path.read_text())
            if not files:
                raise ConfigError(f"{where}: adopt.patches[{i}].file: {path} is not a unified"
                                  " diff (no `+++ b/<path>` line)",
                                  hint="write it with `diff -u a/<path> b/<path>` or `git diff`")
            for name in files:
                if name in names and not (root / name).exists():
                    (root / name).parent.mkdir(parents=True, exist_ok=True)
                    (root / name).write_bytes(zf.read(name))
            try:
                cmd.run([cmd.which("patch", hint=PATCH_HINT), "-p1", "--batch", "--forward",
                         "--fuzz=0", "--no-backup-if-mismatch", "--reject-file=-",
                         "-i", str(path)], cwd=root, echo=False)
            except ToolError as exc:
                raise BuildError(
                    f"{where}: adopt.patches[{i}] ({item.file}) does not apply to"
                    f" {recipe.adopt.wheel}; nothing was built.\n{exc}",
                    hint="the patch was written for other files: regenerate it with"
                         " `diff -u` against the pinned wheel's own files",
                ) from None
            for name in files:
                changed[name] = (root / name).read_bytes()
    return changed
