"""Relabel an installed distribution (torch, torchvision) as NVIDIA labels its builds:

    python retag.py NAME VERSION [TORCH]   (e.g. torch 2.13.0a0+cf30153c4c.nv25.10)

VERSION goes into its metadata, its dist-info folder, NAME/version.py's __version__ and
RECORD; the files it runs are untouched. NGC's torch declares no nvidia-* wheels (CUDA
comes from system folders); the CUDA variant keeps them, installed as wheels (README.md).
With TORCH, its requirement on torch is rewritten to that version, as NVIDIA's torchvision
(built against NVIDIA's torch) declares it; else `pip check` would fail in the image."""

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


name, version = sys.argv[1], sys.argv[2]
torch = sys.argv[3] if len(sys.argv) > 3 else None
dist = md.distribution(name)
info = Path(str(dist._path))  # type: ignore[attr-defined]
site = info.parent
old_info = info.name
module = site / name / "version.py"
module.write_text(re.sub(r"^__version__ = .*$", f"__version__ = {version!r}",
                         module.read_text(), count=1, flags=re.M))
meta = info / "METADATA"
text = re.sub(r"^Version: .*$", f"Version: {version}", meta.read_text(), count=1, flags=re.M)
if torch:
    text = re.sub(r"^Requires-Dist: torch\b[^;\n]*", f"Requires-Dist: torch=={torch}", text,
                  flags=re.M)
meta.write_text(text)
new_info = site / f"{name}-{version}.dist-info"
info.rename(new_info)
rows = []
for row in csv.reader(io.StringIO((new_info / "RECORD").read_text())):
    if not row:
        continue
    path = row[0].replace(f"{old_info}/", f"{new_info.name}/", 1)
    if path in (f"{name}/version.py", f"{new_info.name}/METADATA"):
        file = site / path
        row = [path, record_hash(file), str(file.stat().st_size)]
    else:
        row = [path, *row[1:]]
    rows.append(row)
out = io.StringIO()
csv.writer(out, lineterminator="\n").writerows(rows)
(new_info / "RECORD").write_text(out.getvalue())
print(f"{name} relabelled {dist.version} -> {version}")
