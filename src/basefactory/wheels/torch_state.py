"""Runs INSIDE a platform's container with its own Python; standard library only.

The state of torch's installed files: a reinstall or an upgrade rewrites them (new inode,
mtime), so equal states before and after an install prove torch was left alone.

    python torch_state.py              prints the state: "torch VERSION FILES SHA256"
    python torch_state.py check FILE   compares it with FILE (the state printed before):
                                       "basefactory: torch unchanged: STATE", or exit 97
"""

import csv
import hashlib
import importlib.metadata as md
import os
import sys

CHANGED = 97


def state(path=None):
    """One line that changes whenever torch's version or any of its files changes."""
    found = list(md.distributions(name="torch", **({"path": path} if path else {})))
    if not found:
        return "torch absent"
    dist = found[0]
    # RECORD read here, not `dist.files`: importlib_metadata (the backport, which e.g.
    # dask imports and which then answers for the stdlib) leaves missing files out of it
    files = sorted(row[0] for row in csv.reader((dist.read_text("RECORD") or "").splitlines())
                   if row)
    digest = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(dist.locate_file(f))
            digest.update(f"{f}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}\n".encode())
        except FileNotFoundError:
            digest.update(f"{f}|missing\n".encode())
    return f"torch {dist.version} {len(files)} {digest.hexdigest()}"


def check(before, after):
    """(exit code, what to print) for the states before and after an install."""
    if before.strip() != after.strip():
        return CHANGED, f"basefactory: torch changed:\n{before.strip()}\n{after.strip()}"
    return 0, f"basefactory: torch unchanged: {after.strip()}"


def main(argv, path=None):
    if argv[:1] == ["check"] and len(argv) == 2:
        with open(argv[1]) as f:
            code, message = check(f.read(), state(path))
        print(message)
        return code
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(state(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
