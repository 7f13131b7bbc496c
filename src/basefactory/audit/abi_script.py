"""Runs INSIDE the audited container with its own Python; standard library only.

Loads every shared object under site-packages/dist-packages with dlopen(RTLD_NOW), which
binds every undefined symbol at once: a module built against another torch fails here
with the symbol it lacks, exactly as it would at import time in production. Python's own
C-API symbols come from the running interpreter, so they are never reported. torch is
imported first when present, because torch's C++ extensions find libtorch by soname and
count on `import torch` having loaded it (as every user of them does).

A failing module gets a second chance after importing its own top-level package, since
some packages load their shared objects in an order of their own. What still fails is
reported with the distribution that installed it. A library the NVIDIA container runtime
injects from the host (libcuda, libnvidia-ml, ...) is listed as host-provided, not a
failure. Each module loads in a worker process; a worker that crashes is replaced and the
module it was loading is reported as crashed.

    python abi_script.py [--dist NAME]... [--path DIR]... [--no-site]
prints one line: BASEFACTORY-ABI {json}
"""

import importlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys

# Libraries of the NVIDIA driver: mounted into a container by the NVIDIA runtime, never
# shipped in an image.
HOST_PROVIDED = re.compile(
    r"^(libcuda\.so|libnvidia-[\w.-]+\.so|libnvcuvid\.so|libnvoptix\.so|libcudadebugger\.so)")
MISSING = re.compile(r"([^\s:]+\.so[\w.]*): cannot open shared object file")
UNDEFINED = re.compile(r"undefined symbol: (\S+)")
SHARED = re.compile(r"\.so(\.\d+)*$")


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def site_dirs(extra, site=True):
    dirs = [p for p in sys.path if site and p.endswith(("site-packages", "dist-packages"))]
    return [os.path.realpath(d) for d in [*dirs, *extra] if os.path.isdir(d)]


def owners():
    """Real path of every installed file -> its distribution."""
    found = {}
    for dist in md.distributions():
        name = dist.metadata["Name"] or "?"
        for f in dist.files or []:
            if SHARED.search(str(f)):
                found[os.path.realpath(str(f.locate()))] = name
    return found


def shared_objects(dirs):
    seen = set()
    for root in dirs:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.realpath(os.path.join(folder, name))
                if SHARED.search(name) and path not in seen and os.path.isfile(path):
                    seen.add(path)
                    yield path


def worker():
    """Reads module paths on stdin; answers one JSON line per module."""
    import contextlib
    import ctypes

    with contextlib.suppress(Exception):
        import torch  # noqa: F401  (see the module docstring)
    for line in sys.stdin:
        path, package = json.loads(line)
        print(json.dumps({"start": path}), flush=True)
        error = load(ctypes, path)
        if error and package:
            with contextlib.suppress(BaseException):
                importlib.import_module(package)
            error = load(ctypes, path)
        print(json.dumps({"path": path, "error": error}), flush=True)


def load(ctypes, path):
    try:
        ctypes.CDLL(path, mode=os.RTLD_NOW)
        return None
    except OSError as exc:
        return str(exc)


def relative(path, dirs):
    """`path` below the site folder that holds it (what an import sees), or None."""
    for root in dirs:
        if path.startswith(root + os.sep):
            return path[len(root) + 1:]
    return None


def top_package(path, dirs):
    rel = relative(path, dirs)
    if rel is None:
        return None
    first = rel.split(os.sep)[0]
    name = first.split(".")[0] if SHARED.search(first) else first
    return name if name.isidentifier() else None


def classify(path, error, dist):
    row = {"module": path, "dist": dist, "error": error.replace(path + ": ", "")[:400]}
    missing = MISSING.search(error)
    if missing:
        row["library"] = missing.group(1)
        row["host_provided"] = bool(HOST_PROVIDED.match(missing.group(1)))
    symbol = UNDEFINED.search(error)
    if symbol:
        row["symbol"] = symbol.group(1)
    return row


def audit(dists, extra, site=True):
    dirs = site_dirs(extra, site)
    owner = owners()
    wanted = {canon(d) for d in dists}
    todo = [p for p in shared_objects(dirs)
            if not wanted or canon(owner.get(p, "")) in wanted]
    results, pending = {}, list(todo)
    while pending:
        proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        feed = "".join(json.dumps([p, top_package(p, dirs)]) + "\n" for p in pending)
        out, _ = proc.communicate(feed)
        current = None
        for line in out.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "start" in msg:
                current = msg["start"]
            elif "path" in msg:
                results[msg["path"]] = msg["error"]
                current = None
        if current is not None:  # the worker died loading it
            results[current] = f"crashed while loading (exit {proc.returncode})"
        pending = [p for p in pending if p not in results]
    failures, host = [], []
    for path in todo:
        error = results.get(path)
        if error is None:
            continue
        row = classify(path, error, owner.get(path))
        (host if row.get("host_provided") else failures).append(row)
    for row in failures + host:
        row["module"] = relative(row["module"], dirs) or row["module"]
    return {"modules": len(todo), "failures": failures, "host_provided": host,
            "python": sys.version.split()[0], "site": dirs}


def main(argv):
    if argv[:1] == ["--worker"]:
        worker()
        return 0
    dists, extra, site = [], [], True
    it = iter(argv)
    for arg in it:
        if arg == "--dist":
            dists.append(next(it))
        elif arg == "--path":
            extra.append(next(it))
        elif arg == "--no-site":
            site = False
    print("BASEFACTORY-ABI " + json.dumps(audit(dists, extra, site), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
