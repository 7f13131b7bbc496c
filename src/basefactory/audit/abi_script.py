"""Runs INSIDE the audited container with its own Python; standard library only.

Loads every shared object under site-packages/dist-packages with dlopen(RTLD_NOW), which
binds every undefined symbol at once: a module built against another torch fails here
with the symbol it lacks, exactly as it would at import time in production. Python's own
C-API symbols come from the running interpreter, so they are never reported. torch is
imported first when present, because torch's C++ extensions find libtorch by soname and
count on `import torch` having loaded it (as every user of them does).

Each module loads in a child forked from the worker right after `import torch`, so every
module starts from the same state: what one module maps can never let another load, and
no verdict depends on the order of loading. A failing module gets a second chance after
importing its own top-level package, since some packages load their shared objects in an
order of their own. A library a wheel vendors (in auditwheel's `<name>.libs/`, or in any
folder an audited module names in its DT_RPATH; no RPATH of its own) is opened with its
siblings loaded first, as the loader finds them through the extension's RPATH; in any
other folder a library gets no such help. What still fails is
reported with the distribution that installed it. A library the NVIDIA container runtime
injects from the host (libcuda, libnvidia-ml, ...) is listed as host-provided, not a
failure; but dlopen stops at that missing library before it binds a single symbol, so such
a module is then checked statically: every library it needs must be found (as the loader
would: RPATH/RUNPATH, LD_LIBRARY_PATH, what the worker had loaded once torch was imported,
ld.so.cache, the system folders, and their own needs), or be one the runtime mounts; any
other missing library fails it as dlopen would on a GPU host. Every undefined symbol of
its ELF dynamic symbol table must be defined by its own dependency closure, by the
interpreter or torch's libraries (what every module sees: the worker's state right after
`import torch`, never what earlier modules left mapped, so no verdict depends on the
order modules were loaded), or be the host library's own API (cu*, nvml*). One that is not
is reported as undefined. (Symbol versions are not compared.) A module whose child dies
(a constructor that aborts) is reported as crashed; a worker that dies is replaced.

    python abi_script.py [--dist NAME]... [--path DIR]... [--no-site]
prints one line: BASEFACTORY-ABI {json}
"""

import contextlib
import functools
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
# the folders audited modules name in their RPATH, from the audit to its workers
VENDORED_ENV = "BASEFACTORY_AUDIT_VENDORED"


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


# The API of the host-provided libraries: what a module may need from them.
HOST_API = re.compile(r"^(cu[A-Z]\w*|nvml[A-Z]\w*|nvcuvid\w*|cuvid[A-Z]\w*|NvEnc\w*)$")
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
               "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


@functools.cache
def elf_dynamic(path, symbols=True):
    """(needed sonames, rpath dirs, runpath dirs, defined symbols, strongly undefined
    symbols) of an ELF64 little-endian shared object, read with mmap (stdlib only); with
    `symbols` false, the symbol sets are left empty (libtorch's take a second to read)."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise ValueError("not an ELF64 little-endian file")
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize)
                    for i in range(shnum)]

        def strings(index):
            sec = sections[index]
            return sec[4], sec[4] + sec[5]

        def cstr(table, offset):
            start = table[0] + offset
            return m[start:m.find(b"\0", start, table[1])].decode("utf-8", "replace")

        needed, rpath, runpath, defined, undefined = [], [], [], set(), set()
        for sec in sections:
            _, kind, _, _, offset, size, link, _, _, entsize = sec
            if kind == 6:  # SHT_DYNAMIC
                table = strings(link)
                for at in range(offset, offset + size, 16):
                    tag, value = struct.unpack_from("<qQ", m, at)
                    if tag == 0:
                        break
                    if tag == 1:
                        needed.append(cstr(table, value))
                    elif tag in (15, 29):
                        (rpath if tag == 15 else runpath).extend(
                            cstr(table, value).split(":"))
            elif kind == 11 and entsize and symbols:  # SHT_DYNSYM
                table = strings(link)
                for at in range(offset + entsize, offset + size, entsize):
                    name_off, info, _, shndx = struct.unpack_from("<IBBH", m, at)
                    bind = info >> 4
                    if not name_off or bind not in (1, 2, 10):  # global, weak, unique
                        continue
                    name = cstr(table, name_off)
                    if shndx != 0:
                        defined.add(name)
                    elif bind == 1:  # a weak undefined symbol may stay unresolved
                        undefined.add(name)
    return needed, rpath, runpath, defined, undefined


def loaded_libraries():
    """soname-ish basename -> path of every shared object mapped into this process."""
    found = {}
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and SHARED.search(parts[5].split("/")[-1]):
                found.setdefault(os.path.basename(parts[5]), parts[5])
    return found


def ld_cache():
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return {}
    found = {}
    for line in out.splitlines():
        if "=>" in line:
            name, path = line.split("=>")
            found.setdefault(name.split()[0], path.strip())
    return found


@functools.lru_cache(maxsize=4)
def exported_by(libraries):
    """What the interpreter (the C-API) and the given loaded libraries export: the same
    set for every module while nothing new is loaded (torch's libraries alone export
    hundreds of thousands of symbols)."""
    found = set()
    for lib in [os.path.realpath(sys.executable), *sorted(libraries)]:
        with contextlib.suppress(OSError, ValueError):
            found |= elf_dynamic(lib)[3]
    return frozenset(found)


def static_check(path, loaded, cache):
    """The undefined symbols of `path` that nothing it would load defines, the
    host-provided libraries it needs, and the other libraries it needs that are found
    nowhere here. `loaded`: what every module sees (the worker right after import torch)."""
    origin = os.path.dirname(path)
    available = set(exported_by(frozenset(loaded.values())))
    needed, rpath, runpath, _, undefined = elf_dynamic(path)
    host, missing, seen = [], [], set()
    env_dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    # (soname, the DT_RPATH dirs of the object that needs it and of the objects that
    # loaded that one, its DT_RUNPATH dirs): as ld.so searches, an object's own RUNPATH
    # replaces every RPATH, and an RPATH also serves the libraries its libraries need
    # (auditwheel's `<name>.libs/` are found that way)
    queue = [(n, *search_paths(rpath, runpath, origin, [])) for n in needed]
    while queue:
        name, chain, rup = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        dirs = chain + env_dirs + rup  # chain is empty beside a RUNPATH
        found = next((os.path.join(d, name) for d in dirs
                      if os.path.isfile(os.path.join(d, name))), None)
        found = found or loaded.get(name) or cache.get(name) or next(
            (os.path.join(d, name) for d in SYSTEM_DIRS if os.path.isfile(os.path.join(d, name))),
            None)
        if found is None:
            (host if HOST_PROVIDED.match(name) else missing).append(name)
            continue
        try:
            lib_needed, lib_rp, lib_rup, lib_defined, _ = elf_dynamic(found)
        except (OSError, ValueError):
            continue
        available |= lib_defined
        paths = search_paths(lib_rp, lib_rup, os.path.dirname(found), chain)
        queue += [(n, *paths) for n in lib_needed]
    unresolved = sorted(s for s in undefined - available if not HOST_API.match(s))
    return {"unresolved": unresolved, "needs_host": sorted(host), "missing": sorted(missing),
            "symbols": len(undefined)}


def search_paths(rpath, runpath, origin, chain):
    """(the RPATH chain, the RUNPATH) an object at `origin` searches for what it needs,
    `chain` being the RPATH chain of the object that loaded it."""
    def expand(dirs):
        return [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in dirs if d]
    if runpath:
        return [], expand(runpath)
    return expand(rpath) + chain, []


def worker():
    """Reads module paths on stdin; answers one JSON line per module. Each module loads in
    a child forked from this worker right after `import torch`: every module starts from
    the same state, so nothing one module (or the package imported for its second chance)
    maps can let another load, and no verdict depends on the order of loading."""
    import ctypes

    with contextlib.suppress(Exception):
        import torch  # noqa: F401  (see the module docstring)
    baseline = loaded_libraries()
    cache = ld_cache()
    vendored = frozenset(json.loads(os.environ.get(VENDORED_ENV) or "[]"))
    for line in sys.stdin:
        path, package = json.loads(line)
        print(json.dumps({"start": path}), flush=True)
        answer, code = in_child(check_module, ctypes, path, package, baseline, cache,
                                vendored)
        if answer is None:
            answer = {"path": path, "static": None,
                      "error": f"crashed while loading (exit {code})"}
        print(json.dumps(answer), flush=True)


def in_child(work, *args):
    """(work(*args)'s JSON-able result, computed in a forked child, or None when the child died
    before answering (a module's constructor may abort, or exit); the child's exit code,
    negative for a signal as subprocess says it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            with os.fdopen(write_end, "w") as out:
                out.write(json.dumps(work(*args)))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answers:
        answer = answers.read()
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return (json.loads(answer) if answer else None), code


def check_module(ctypes, path, package, baseline, cache, vendored=frozenset()):
    error = load_with_siblings(ctypes, path, vendored=vendored)
    if error and package:
        with contextlib.suppress(BaseException):
            importlib.import_module(package)
        error = load_with_siblings(ctypes, path, vendored=vendored)
    static = None
    missing = MISSING.search(error or "")
    if missing and HOST_PROVIDED.match(missing.group(1)):
        try:
            static = static_check(path, baseline, cache)
        except (OSError, ValueError) as exc:
            static = {"error": str(exc)}
    return {"path": path, "error": error, "static": static}


def load(ctypes, path):
    try:
        ctypes.CDLL(path, mode=os.RTLD_NOW)
        return None
    except OSError as exc:
        return str(exc)


def vendored_sibling(path, error, vendored=frozenset()):
    """The library beside `path` that dlopen could not find, when `path` is a library a
    wheel vendors, else None. Vendored libraries carry no RPATH of their own: the wheel's
    extension modules name the folder in theirs, and the loader then finds a vendored
    library's siblings there (numpy's OpenBLAS needs its gfortran, which needs its
    quadmath). Only such a library, opened on its own, misses them; a library in any other
    folder gets no such help. A vendored folder is auditwheel's `<name>.libs/`, or any
    folder an audited module names in its DT_RPATH (`vendored`: rpath_folders), whatever
    the tool that wrote it called it (PyNvVideoCodec's `pynvvideocodec.`)."""
    folder = os.path.dirname(path)
    if error is None or not (folder.endswith(".libs")
                             or os.path.realpath(folder) in vendored):
        return None
    missing = MISSING.search(error)
    if missing is None:
        return None
    sibling = os.path.join(folder, missing.group(1))
    return sibling if os.path.isfile(sibling) else None


def load_with_siblings(ctypes, path, loading=frozenset(), vendored=frozenset()):
    """dlopen `path`; a vendored library first gets the siblings it needs loaded (each
    the same way), as the loader finds them through the extension's RPATH."""
    error = load(ctypes, path)
    loading = loading | {path}
    sibling = vendored_sibling(path, error, vendored)
    while sibling is not None and sibling not in loading:
        failed = load_with_siblings(ctypes, sibling, loading, vendored)
        if failed is not None:
            return failed  # what the loader would stop at: the sibling's own missing need
        loading = loading | {sibling}
        error = load(ctypes, path)
        sibling = vendored_sibling(path, error, vendored)
    return error


def rpath_folders(paths):
    """The folders the objects `paths` name in their DT_RPATH, `$ORIGIN` expanded: where
    the loader also looks for what the libraries they load need. (A DT_RUNPATH serves
    only the object's own needs, so it makes no folder vendored.)"""
    found = set()
    for path in paths:
        try:
            rpath = elf_dynamic(path, symbols=False)[1]
        except (OSError, ValueError):
            continue
        found.update(os.path.realpath(d) for d in
                     search_paths(rpath, [], os.path.dirname(path), [])[0])
    return frozenset(found)


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
    results, statics, pending = {}, {}, list(todo)
    # of every module, not only those a replaced worker has left: the same verdicts
    env = {**os.environ, VENDORED_ENV: json.dumps(sorted(rpath_folders(todo)))}
    while pending:
        proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
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
                statics[msg["path"]] = msg.get("static")
                current = None
        if current is not None:  # the worker died loading it
            results[current] = f"crashed while loading (exit {proc.returncode})"
        elif not any(p in results for p in pending):
            # it died before loading anything (no interpreter, no script, a broken
            # site): another worker would too, and a loop of them never ends
            for p in pending:
                results[p] = (f"not checked: the audit worker exited {proc.returncode}"
                              " before loading any module")
            break
        pending = [p for p in pending if p not in results]
    return verdict(todo, results, statics, owner, dirs)


def verdict(todo, results, statics, owner, dirs):
    """The report of the modules `todo`, from what each worker answered (`results`: the
    dlopen error or None; `statics`: the static check of a module that needs a host
    library) and who installed each (`owner`)."""
    failures, host = [], []
    for path in todo:
        error = results.get(path)
        if error is None:
            continue
        row = classify(path, error, owner.get(path))
        static = statics.get(path)
        if row.get("host_provided") and static is not None:
            row["static_check"] = static
            if static.get("missing"):
                # a library no runtime mounts: on a GPU host dlopen stops at it
                row["host_provided"] = False
                row["library"] = static["missing"][0]
                row["error"] = (f"{row['library']}: cannot open shared object file (checked"
                                f" statically: missing {', '.join(static['missing'])}; the"
                                f" module also needs {', '.join(static['needs_host'])},"
                                " the host's)")
            elif "error" in static:
                # neither loaded nor read: not a pass
                row["host_provided"] = False
                row["error"] = (f"cannot be checked statically: {static['error']} (the module"
                                f" needs {row.pop('library')}, the host's)")
            elif static["unresolved"]:
                # what dlopen would say on a host with the driver
                row["host_provided"] = False
                row["symbol"] = static["unresolved"][0]
                row["error"] = (f"undefined symbol: {row['symbol']} (checked statically:"
                                f" {len(static['unresolved'])} unresolved of"
                                f" {static['symbols']}; the module also needs"
                                f" {row['library']}, the host's)")
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
