"""Issue 6: the catalog under load. 1,000 image tags and 5,000 wheels published to a real
registry and a real devpi (a factory of the bench's own, on other ports), the catalog
started as `basefactory catalog serve`, then wrk with 50 connections on the overview and on
/api/combos. Beside it, the naive catalog: one that reads the registry and devpi for each
request (what a page without a snapshot would cost).

The published data is copied from what the default factory really published (labels,
package manifests, fingerprints), spread over 5 platforms, so that pages and replies have
their real sizes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import textwrap
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from basefactory import house
from basefactory.catalog import process, views
from basefactory.catalog.app import TEMPLATES
from basefactory.catalog.snapshot import Reader
from basefactory.config.factory import Factory, load_factory
from basefactory.daemons.credentials import registry_auth
from basefactory.proofs import Kind, Proof, Subject, store_devpi
from basefactory.refs import platform_index
from basefactory.session import Session
from bench.common import PLATFORM, WORK, Figure, Report, session

HERE = WORK / "catalog"
PLATFORMS = [f"bench-{p}" for p in ("cpu-a", "cpu-b", "cu126", "cu128", "cu130")]
IMAGES = ("cuda-deps", "tts-deps", "stt-deps", "api-lean")
TAGS_PER_CELL = 50  # 4 images x 5 platforms x 50 = 1,000 immutable tags
PROJECTS, VERSIONS = 100, 10  # x 5 platforms = 5,000 wheels
PORTS = {"index": 3161, "registry": 5021, "catalog": 8791}
CONNECTIONS, SECONDS = 50, 10
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def bench(report: Report) -> None:
    require_wrk()
    factory = make_factory()
    house.up(factory)
    try:  # the bench's own devpi and registry stop with it (their data stays for a rerun)
        real = real_data()
        with Session(factory) as s, ThreadPoolExecutor(8) as pool:
            tags = populate_registry(factory, real, pool)
            wheels = populate_index(s, real, pool)
        print(f"  published: {tags} tags, {wheels} wheels", flush=True)

        cold = first_load(factory, keep_snapshot=False)
        warm = first_load(factory, keep_snapshot=True)
        proc = process.process(factory)
        url = process.start(factory)
        try:
            wait_refreshed(url)  # steady state: the first full read of the sources is done
            probe = wheel_with_combos(url)
            overview = wrk(f"{url}/")
            combos = wrk(f"{url}/api/combos?wheel={probe}")
        finally:
            proc.stop()
        naive = naive_request(factory)
        bulk_read, naive_read, read_note = wheel_reads(factory)
    finally:
        house.down(factory)
    scale = f"{tags} tags, {wheels} wheels, {CONNECTIONS} connections, {SECONDS} s of wrk"
    for name, result in (("overview `/`", overview), (f"`/api/combos?wheel={probe}`", combos)):
        p50, p99, rps = result
        report.add(Figure(f"catalog {name}: p99 latency ({scale})", p99, naive * 1000, "ms",
                          "p99 <= 20 ms", p99 <= 20.0,
                          f"p50 {p50:.2f} ms, {rps:.0f} requests/s, after the catalog's first"
                          " refresh (its background refresh keeps running); naive: one request that"
                          " reads the registry and devpi and renders, as a catalog without a"
                          " snapshot would"))
    report.add(Figure("catalog first page after start, no saved snapshot (reads everything)",
                      cold, None, "s", "<= 10 s", cold <= 10.0,
                      "from spawning `basefactory catalog serve` to the first 200 of `/` with"
                      " the data; the process's own start (Python, FastAPI) included; each"
                      " index's wheels and test records in one request (the factory's devpi"
                      " plugin)"))
    report.add(Figure("catalog's uncached read of every wheel and its test records from devpi",
                      bulk_read, naive_read, "s", "faster than file by file",
                      bulk_read < naive_read, read_note))
    report.add(Figure("catalog first page after a restart (saved snapshot)", warm, None, "s",
                      "<= 1 s", warm <= 1.0,
                      "the snapshot saved by the last run answers while the first refresh"
                      " reads the sources"))


# --- the bench's factory ---------------------------------------------------------------


def require_wrk() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("bench catalog: wrk is missing (`make bench` installs it; as root:"
                         " apt-get install wrk)")


def make_factory() -> Factory:
    HERE.mkdir(parents=True, exist_ok=True)
    platforms = "".join(
        f'[platforms."{p}"]\nimage = "example.invalid/pytorch:{p}"\n' for p in PLATFORMS)
    (HERE / "factory.toml").write_text(textwrap.dedent(f"""
        state_dir = ".factory"
        [index]
        port = {PORTS["index"]}
        [registry]
        port = {PORTS["registry"]}
        [catalog]
        port = {PORTS["catalog"]}
    """) + platforms)
    return load_factory(HERE / "factory.toml")


def real_data() -> dict[str, Any]:
    """Labels of every image and the fingerprint the default factory published."""
    s = session()
    ns = s.factory.config.registry.namespace
    labels = {image: s.registry.labels(f"{ns}/{image}", PLATFORM) for image in IMAGES}
    missing = [image for image, found in labels.items() if not found]
    if missing:
        raise SystemExit(f"bench catalog: {', '.join(missing)} not published on {PLATFORM}:"
                         " run `basefactory publish` first (`make bench` runs noop first)")
    fingerprint = s.devpi.custom_data(platform_index(s.factory, PLATFORM))["fingerprint"]
    return {"labels": labels, "fingerprint": fingerprint}


def populate_registry(factory: Factory, real: dict[str, Any], pool: ThreadPoolExecutor) -> int:
    """Pushes through the registry's v2 API (what `docker push` does, minus the engine):
    one small layer per repository, a config blob with the real labels per tag."""
    base = factory.config.registry.base_url
    ns = factory.config.registry.namespace
    layer = _layer()
    with httpx.Client(base_url=base, timeout=30, auth=registry_auth(factory)) as http:
        jobs = []
        for image in IMAGES:
            repo = f"{ns}/{image}"
            have = set(_tags(http, repo))  # a rerun after a crash pushes only what is missing
            _put_blob(http, repo, layer)
            for platform in PLATFORMS:
                for n in range(TAGS_PER_CELL):
                    day = f"2026{1 + n // 28:02d}{1 + n % 28:02d}"
                    short = hashlib.sha256(f"{repo}{platform}{n}".encode()).hexdigest()[:12]
                    tag = f"{platform}-{day}-{short}"
                    newest = n == TAGS_PER_CELL - 1
                    if tag in have and (not newest or platform in have):
                        continue
                    jobs.append((repo, image, platform, tag, newest))
        list(pool.map(lambda j: _push(http, layer, real["labels"][j[1]], *j), jobs))
        return sum(1 for image in IMAGES for tag in _tags(http, f"{ns}/{image}")
                   if tag not in PLATFORMS)


def _tags(http: httpx.Client, repo: str) -> list[str]:
    r = http.get(f"/v2/{repo}/tags/list", params={"n": 100000})
    return (r.json().get("tags") or []) if r.status_code == 200 else []


def _push(http: httpx.Client, layer: bytes, labels: dict[str, str], repo: str, image: str,
          platform: str, tag: str, newest: bool) -> None:
    cell_labels = {k: v.replace(PLATFORM, platform) for k, v in labels.items()}
    cell_labels["org.opencontainers.image.version"] = tag
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": cell_labels},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [_digest(gzip.decompress(layer))]}}).encode()
    _put_blob(http, repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": _digest(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": _digest(layer)}],
    }).encode()
    for ref in (tag, platform) if newest else (tag,):
        r = http.put(f"/v2/{repo}/manifests/{ref}", content=manifest,
                     headers={"Content-Type": DOCKER_MANIFEST})
        r.raise_for_status()


def _put_blob(http: httpx.Client, repo: str, data: bytes) -> None:
    digest = _digest(data)
    if http.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    http.put(f"{location}{sep}digest={digest}", content=data,
             headers={"Content-Type": "application/octet-stream"}).raise_for_status()


def _layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bench.txt")
        body = b"basefactory catalog benchmark\n"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), mtime=0)


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def populate_index(s: Session, real: dict[str, Any], pool: ThreadPoolExecutor) -> int:
    """Uploads through the factory's own devpi client (credentials, the file_upload action)
    and attaches a test record to each wheel, as `wheels build` does."""
    devpi = s.devpi
    folder = HERE / "wheels"
    folder.mkdir(exist_ok=True)
    for platform in PLATFORMS:
        index = platform_index(s.factory, platform)
        data = devpi.custom_data(index)
        if "fingerprint" not in data:
            devpi.set_custom_data(index, {**data, "fingerprint": {
                **real["fingerprint"], "platform": platform}})

    def project(job: tuple[str, int]) -> int:
        platform, n = job
        index = platform_index(s.factory, platform)
        name = f"bench-ext-{n:03d}"
        have = {f.filename: f for f in devpi.release_files(index, name)}
        for v in range(VERSIONS):
            version = f"1.{v}.0+{platform.replace('-', '')}"
            wheel = _wheel(folder, name, version)
            if wheel.name not in have:
                devpi.upload(index, wheel, name=name, version=version)
        for f in devpi.release_files(index, name):
            if not f.toxresults:  # a proof of the model's shape, as wheels/test.py writes
                store_devpi.attach(devpi, f.url, Proof.new(
                    Kind.WHEEL_TEST, Subject(platform=platform, wheel=f.filename,
                                             wheel_sha256=f.sha256),
                    inputs=f.sha256, passed=True, evidence={"bench": True}))
        return VERSIONS

    return sum(pool.map(project, [(p, n) for p in PLATFORMS for n in range(PROJECTS)]))


def _wheel(folder: Path, name: str, version: str) -> Path:
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    if path.exists():
        return path
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": b"",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},"
        f"{len(b)}\n" for n, b in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in {**files, f"{info}/RECORD": record.encode()}.items():
            zf.writestr(n, b)
    return path


# --- measuring ---------------------------------------------------------------------------


def first_load(factory: Factory, *, keep_snapshot: bool) -> float:
    """Seconds from spawning the catalog to its first page that shows the published data."""
    process.stop(factory)
    if not keep_snapshot:
        (factory.state_dir / "catalog" / "snapshot.json").unlink(missing_ok=True)
    url = factory.config.catalog.url
    proc = process.process(factory)
    started = time.perf_counter()
    proc.start()
    try:
        with httpx.Client(timeout=5) as http:
            while time.perf_counter() - started < 120:
                try:
                    r = http.get(f"{url}/")
                    if r.status_code == 200 and PLATFORMS[-1] in r.text:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise SystemExit("bench catalog: the catalog showed no data within 120 s")
    finally:
        proc.stop()


def wait_refreshed(url: str) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/healthz", timeout=10).json().get("refreshed_at") is None:
        if time.monotonic() > deadline:
            raise SystemExit("bench catalog: the catalog did not finish its first refresh")
        time.sleep(0.2)


def wheel_with_combos(url: str) -> str:
    wheels = httpx.get(f"{url}/api/wheels?platform={PLATFORMS[0]}", timeout=30).json()["data"]
    return str(wheels[0]["project"])


LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) with CONNECTIONS connections over 2 threads."""
    subprocess.run(["wrk", "-t1", "-c4", "-d1s", url], check=True, capture_output=True)  # warm
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    found = {p: float(v) * UNITS[u] for p, v, u in LATENCY.findall(out)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or not rps or set(found) != {"50", "99"}:
        raise SystemExit(f"bench catalog: wrk on {url} did not measure cleanly:\n{out}")
    return found["50"], found["99"], float(rps.group(1))


def wheel_reads(factory: Factory) -> tuple[float, float, str]:
    """The wheel side of an uncached read (every index's wheels and their test records),
    timed both ways in one run: one request per index (the factory's devpi plugin), and
    the naive read through devpi's own JSON pages (a request per project and per record),
    with each kind's count and what one request costs devpi alone (median of 100)."""
    bulk = Reader(factory)
    try:
        started = time.perf_counter()
        wheels = bulk.wheels()
        took_bulk = time.perf_counter() - started
    finally:
        bulk.close()
    naive = Reader(factory)
    naive.devpi.index_wheels = lambda index: None  # type: ignore[method-assign]
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    request = naive.devpi._request

    def counted(method: str, path: str, **kwargs: Any) -> httpx.Response:
        kind = ("test record" if ".toxresult-" in path else
                "project listing" if path.count("/") >= 3 else "index")
        counts[kind] = counts.get(kind, 0) + 1
        samples.setdefault(kind, []).append(path)
        return request(method, path, **kwargs)

    naive.devpi._request = counted  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        naive.wheels()
        took_naive = time.perf_counter() - started
    finally:
        naive.close()
    parts = []
    with httpx.Client(base_url=factory.config.index.base_url, timeout=30) as http:
        for kind in ("project listing", "test record"):
            times = []
            for path in samples.get(kind, [])[:100]:
                t = time.perf_counter()
                http.get(path, headers={"Accept": "*/*" if kind == "test record"
                                        else "application/json"})
                times.append(time.perf_counter() - t)
            median = sorted(times)[len(times) // 2] * 1000 if times else 0.0
            parts.append(f"{counts.get(kind, 0)} {kind}s at {median:.1f} ms each alone")
    note = (f"{len(wheels)} wheels in {len(factory.config.platforms) + 1} indexes, one request"
            f" each; naive: devpi's JSON pages, {' and '.join(parts)}, 16 at a time: devpi"
            " answers from one Python process, so concurrency does not shorten it")
    return took_bulk, took_naive, note


def naive_request(factory: Factory) -> float:
    """One request of a catalog that keeps nothing: read both sources, build the overview,
    render the page (the median of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        reader = Reader(factory)
        try:
            snap = reader.read()
            TEMPLATES.get_template("overview.html").render(
                s=snap, error=None, version="bench", overview=views.overview(snap))
        finally:
            reader.close()
        times.append(time.perf_counter() - started)
    return sorted(times)[1]

