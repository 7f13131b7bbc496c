"""Runs INSIDE a fresh container of the image under test, with its own Python; standard
library only.

Installs one wheel exactly as the README tells users (`pip install --index-url INDEX
NAME==VERSION`), and records what that did: every distribution before and after (version
and installed size), torch's file state before and after, pip's output, the wheel's
recipe test, and the ABI audit of every distribution the install added or changed. The
verdict is not made here: the factory reads the record (fit.py), so that the rules are
one piece of tested code on the host.

pip's own resolver goes first (`pip install --dry-run --report`): when what it would
install already breaks a rule (it would replace or reinstall a distribution the image has,
or bring a distribution matching --refuse-added into an image without torch), that is
recorded and nothing is downloaded or installed. Only a resolution that breaks no rule
is installed and tested.

    python fit_script.py --index-url URL --spec NAME==VERSION --test-file FILE
                         [--torch-state FILE] [--abi FILE] [--refuse-added REGEX]
prints one line: BASEFACTORY-FIT {json}
"""

import argparse
import contextlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys

TAIL = 20


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions():
    found = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        # the first on sys.path is the one that imports (a system Python may hold two)
        if not name or canon(name) in found:
            continue
        size = 0
        for f in dist.files or []:
            with contextlib.suppress(OSError):
                size += os.path.getsize(f.locate())
        found[canon(name)] = {"version": dist.version, "size": size}
    return found


def head_mb(url):
    """The download's size from the index (a HEAD request, nothing downloaded), or None."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as r:
            size = r.headers.get("Content-Length")
        return round(int(size) / 1e6, 1) if size else None
    except (OSError, ValueError):
        return None


def resolve(args, before):
    """What pip would install for the spec, and whether that already breaks a rule."""
    report = "/tmp/basefactory-fit-report.json"
    rc, out = run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                   "--no-input", "--report", report, "--index-url", args.index_url, args.spec])
    if rc != 0:  # a pip without --report, or no resolution: the install says which
        return {"rc": rc, "tail": out[-TAIL:], "refuse": False}
    with open(report) as f:
        items = json.load(f).get("install") or []
    would = []
    for item in items:
        meta = item.get("metadata") or {}
        url = (item.get("download_info") or {}).get("url", "")
        would.append({"name": canon(meta.get("name", "?")), "version": meta.get("version", "?"),
                      "download_mb": head_mb(url) if url.startswith("http") else None})
    touches = [w for w in would if w["name"] in before]
    stack = [w for w in would if args.refuse_added and "torch" not in before
             and re.match(args.refuse_added, w["name"])]
    return {"rc": 0, "would_install": would, "refuse": bool(touches or stack)}


def run(argv, **kw):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kw)
    sys.stdout.write(proc.stdout)  # the full output goes to the fit's log
    sys.stdout.flush()
    return proc.returncode, proc.stdout.splitlines()


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--index-url", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--test-file", required=True)
    parser.add_argument("--torch-state")
    parser.add_argument("--abi")
    parser.add_argument("--refuse-added", default="")
    # install without asking the resolver first (the benchmark's naive side)
    parser.add_argument("--no-resolve", action="store_true")
    args = parser.parse_args(argv)

    def torch_state():
        if not args.torch_state:
            return None
        return run([sys.executable, args.torch_state])[1][-1:]

    record = {"spec": args.spec, "before": distributions(), "torch_before": torch_state()}
    record["resolution"] = None if args.no_resolve else resolve(args, record["before"])
    if record["resolution"] and record["resolution"]["refuse"]:
        record.update(install={"rc": None, "tail": [], "skipped": "refused by the resolution"},
                      after=record["before"], torch_after=record["torch_before"],
                      test=None, abi=None)
        print("BASEFACTORY-FIT " + json.dumps(record, sort_keys=True))
        return 0
    rc, out = run([sys.executable, "-m", "pip", "install", "--no-input",
                   "--index-url", args.index_url, args.spec])
    record["install"] = {"rc": rc, "tail": out[-TAIL:]}
    record["after"] = distributions()
    record["torch_after"] = torch_state()
    record["test"] = record["abi"] = None
    if rc == 0:
        with open(args.test_file) as f:
            command = f.read()
        test_rc, test_out = run(["sh", "-c", command], cwd="/tmp")
        record["test"] = {"rc": test_rc, "tail": test_out[-TAIL:]}
        before = record["before"]
        touched = sorted(n for n, d in record["after"].items()
                         if before.get(n, {}).get("version") != d["version"])
        if args.abi and touched:
            dists = [x for n in touched for x in ("--dist", n)]
            _, abi_out = run([sys.executable, args.abi, *dists])
            mark = "BASEFACTORY-ABI "
            line = next((x for x in abi_out if x.startswith(mark)), None)
            record["abi"] = json.loads(line[len(mark):]) if line else {"error": abi_out[-TAIL:]}
    print("BASEFACTORY-FIT " + json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
