"""Runs INSIDE a fresh container of the image under test, with its own Python; standard
library only.

Installs one wheel exactly as the README tells users (`pip install --index-url INDEX
NAME==VERSION`), and records what that did: every distribution before and after (version
and installed size), torch's file state before and after, pip's output, the wheel's
recipe test, and the ABI audit of every distribution the install added or changed. The
verdict is not made here: the factory reads the record (fit.py), so that the rules are
one piece of tested code on the host.

    python fit_script.py --index-url URL --spec NAME==VERSION --test-file FILE
                         [--torch-state FILE] [--abi FILE]
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
    args = parser.parse_args(argv)

    def torch_state():
        if not args.torch_state:
            return None
        return run([sys.executable, args.torch_state])[1][-1:]

    record = {"spec": args.spec, "before": distributions(), "torch_before": torch_state()}
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
