"""Relabel the installed torch as NVIDIA labels its builds: VERSION (e.g.
2.13.0a0+cf30153c4c.nv25.10) in its metadata, its dist-info folder, torch.__version__ and
RECORD. The files torch runs are untouched. NGC's torch declares no nvidia-* wheels (CUDA
comes from system folders); the CUDA variant keeps them, installed as wheels (README.md)."""

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import sys
from pathlib import Path


def record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


version = sys.argv[1]
dist = md.distribution("torch")
info = Path(str(dist._path))  # type: ignore[attr-defined]
site = info.parent
old_info = info.name
module = site / "torch" / "version.py"
module.write_text(re.sub(r"^__version__ = .*$", f"__version__ = {version!r}",
                         module.read_text(), count=1, flags=re.M))
meta = info / "METADATA"
meta.write_text(re.sub(r"^Version: .*$", f"Version: {version}", meta.read_text(), count=1,
                       flags=re.M))
new_info = site / f"torch-{version}.dist-info"
info.rename(new_info)
rows = []
for row in csv.reader(io.StringIO((new_info / "RECORD").read_text())):
    if not row:
        continue
    path = row[0].replace(f"{old_info}/", f"{new_info.name}/", 1)
    if path in ("torch/version.py", f"{new_info.name}/METADATA"):
        file = site / path
        row = [path, record_hash(file), str(file.stat().st_size)]
    else:
        row = [path, *row[1:]]
    rows.append(row)
out = io.StringIO()
csv.writer(out, lineterminator="\n").writerows(rows)
(new_info / "RECORD").write_text(out.getvalue())
print(f"torch relabelled {dist.version} -> {version}")
