"""Issue 27: tts-deps on an empty node, by engine and layer compression, against the
physical floor and the naive build.

Each containerd figure runs a containerd of its own (fresh root, state and socket: an
empty node) and times `ctr image pull` (fetch, decompress, unpack to overlayfs). Docker
20.10 (this machine's engine) pulls gzip only: its figure is a pull into the engine with
every factory image removed first. The floor is what no engine can beat on this machine:
the zstd layers fetched over loopback, plus the uncompressed layers extracted to disk.
Both copies, zstd and uncompressed OCI layers (for fast networks), are made by the
factory's own code (`images/compression.py`).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

from basefactory.config.factory import Factory
from basefactory.daemons.credentials import registry_auth
from basefactory.images import compression
from basefactory.refs import image_ref, repository, zstd_repository
from basefactory.session import Session
from bench.common import PLATFORM, WORK, Figure, Report, run, session, timed
from bench.images import _naive_context, forget_factory_images

IMAGE = "tts-deps"


def with_zstd(factory: Factory) -> Factory:
    registry = factory.config.registry.model_copy(update={"compression": ("gzip", "zstd")})
    return Factory(factory.path, factory.config.model_copy(update={"registry": registry}))


class Containerd:
    """A containerd with nothing in it: its own root, state and socket."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.sock = folder / "containerd.sock"
        config = folder / "config.toml"
        config.write_text(f'version = 2\nroot = "{folder}/root"\nstate = "{folder}/state"\n'
                          f'[grpc]\naddress = "{self.sock}"\n'
                          '[plugins."io.containerd.grpc.v1.cri"]\ndisable_tcp_service = true\n')
        self.proc = subprocess.Popen(["containerd", "--config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["ctr", "--address", str(self.sock), "version"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the bench's containerd did not start")

    def pull(self, ref: str, auth: tuple[str, str]) -> float:
        return timed(lambda: run(["ctr", "--address", str(self.sock), "image", "pull",
                                  "--plain-http", "--user", f"{auth[0]}:{auth[1]}", ref]))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        # its overlay snapshots may still be mounted
        subprocess.run(["sh", "-c", f"grep -o ' {self.folder}[^ ]*' /proc/mounts | xargs -r -n1"
                                    " umount"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def empty_node_pull(ref: str, auth: tuple[str, str], *, runs: int = 1) -> float:
    """The median of `runs` pulls, each into a containerd of its own."""
    times = []
    for _ in range(runs):
        node = Containerd(WORK / "coldstart" / "containerd")
        try:
            times.append(node.pull(ref, auth))
        finally:
            node.close()
    return statistics.median(times)


def floor(s: Session, repo: str, tag: str) -> tuple[float, float, int, int]:
    """(transfer s, extraction s, compressed bytes, uncompressed bytes): the zstd layers
    fetched over loopback into memory, then the uncompressed tars extracted to disk."""
    manifest = s.registry.manifest(repo, tag)
    assert manifest is not None
    started = time.perf_counter()
    blobs = [s.registry.blob(repo, layer["digest"], timeout=600)
             for layer in manifest.body["layers"]]
    transfer = time.perf_counter() - started
    raws = [subprocess.run(["zstd", "-dc"], input=b, capture_output=True, check=True).stdout
            for b in blobs]
    target = WORK / "coldstart" / "extract"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    started = time.perf_counter()
    for raw in raws:  # GNU tar, as fast an extraction as this machine has; no fsync (no
        # engine syncs a layer's files either)
        subprocess.run(["tar", "-x", "-C", str(target)], input=raw, check=True)
    extract = time.perf_counter() - started
    shutil.rmtree(target, ignore_errors=True)
    return transfer, extract, sum(map(len, blobs)), sum(map(len, raws))


def bench(report: Report) -> None:
    s = session()
    factory = with_zstd(s.factory)
    zs = Session(factory)
    docker = s.docker.client.path
    auth = registry_auth(factory)
    assert auth is not None, "the bench runs against the embedded registry"
    address = factory.config.registry.address
    repo, zrepo = repository(factory, IMAGE), zstd_repository(factory, IMAGE)
    tag = s.registry.labels(repo, PLATFORM).get("org.opencontainers.image.version")
    assert tag, f"{repo}:{PLATFORM} is not published (make demo)"
    # the copies: zstd by the factory's own step, uncompressed by the same copy
    # an earlier run's copy is deleted first: the figure is the copy's own cost
    for ztag in (tag, PLATFORM):
        if (old := s.registry.digest(zrepo, ztag)) is not None:
            s.registry.delete(zrepo, old)
    started = time.perf_counter()
    copy = compression.copy_immutable(zs, IMAGE, tag)
    copy_s = time.perf_counter() - started
    compression.move(zs, IMAGE, copy, PLATFORM)
    plain_repo = f"{factory.config.registry.namespace}-bench-plain/{IMAGE}"
    plain = f"{address}/{plain_repo}:{PLATFORM}"
    if s.registry.digest(plain_repo, PLATFORM) is None:
        compression.copy_image(s.registry, repo, PLATFORM, plain_repo, PLATFORM, to="none")

    gzip_ref = image_ref(factory, IMAGE, PLATFORM)
    zstd_ref = f"{address}/{zrepo}:{PLATFORM}"
    forget_factory_images(docker, address)
    docker_gzip = timed(lambda: run([docker, "pull", gzip_ref]))
    # one run each varied by a third here: the two compared sides get three
    ctr_gzip = empty_node_pull(gzip_ref, auth, runs=3)
    ctr_zstd = empty_node_pull(zstd_ref, auth, runs=3)
    ctr_plain = empty_node_pull(plain, auth)
    transfer, extract, zbytes, raw = floor(s, zrepo, PLATFORM)
    floor_s = transfer + extract
    gz = s.registry.manifest(repo, PLATFORM)
    assert gz is not None
    sizes = f"gzip {gz.size / 1e6:.0f} MB, zstd {zbytes / 1e6:.0f} MB, uncompressed" \
            f" {raw / 1e6:.0f} MB"
    # the naive way, on an empty engine: the platform's base pulled, the stack installed
    # and compiled (the same Dockerfile as bench/images.py's)
    base = image_ref(factory, "base", PLATFORM)
    work = WORK / "coldstart" / "naive"
    ctx = _naive_context(work, base)
    mirror = s.devpi.simple_url(factory.config.index.mirror)
    forget_factory_images(docker, address)
    naive = timed(lambda: run([docker, "build", "--network", "host", "--no-cache", "-t",
                               "bench/naive:coldstart", "--build-arg",
                               f"PIP_INDEX_URL={mirror}", str(ctx)]))
    forget_factory_images(docker, address)

    report.add(Figure("zstd copy of tts-deps (registry to registry, streamed through pigz and"
                      " zstd)", copy_s, None, "s", "—", True,
                      f"{sizes}; made once per build, before any moving tag moves"))
    report.add(Figure("cold start of tts-deps on an empty node: Docker 20.10 pulls gzip",
                      docker_gzip, naive, "s", ">= 10x the naive build",
                      naive / docker_gzip >= 10,
                      "naive: the well-layered Dockerfile built on an empty engine (pulls the"
                      " platform's base, installs and compiles the stack), same run"))
    report.add(Figure("cold start of tts-deps on an empty node: containerd pulls gzip",
                      ctr_gzip, naive, "s", ">= 10x the naive build", naive / ctr_gzip >= 10,
                      "median of 3, each a containerd of its own (fresh root): `ctr image pull`"
                      " (fetch, then decompress and unpack to overlayfs layer by layer)"))
    report.add(Figure("cold start of tts-deps on an empty node: containerd pulls zstd",
                      ctr_zstd, naive, "s", ">= 10x naive; <= 1.5x the floor",
                      naive / ctr_zstd >= 10 and ctr_zstd <= 1.5 * floor_s,
                      f"median of 3; {ctr_zstd / floor_s:.2f}x the floor ({floor_s:.1f} s);"
                      f" {ctr_gzip / ctr_zstd:.2f}x containerd's gzip pull"))
    report.add(Figure("cold start of tts-deps on an empty node: containerd pulls"
                      " uncompressed OCI layers", ctr_plain, naive, "s", "—", True,
                      "no decompression, but every byte over the wire: on loopback the"
                      " network costs nothing, on a real one it is the bottleneck"))
    report.add(Figure("physical floor: zstd layers over loopback + extraction to disk",
                      floor_s, None, "s", "—", True,
                      f"transfer of {zbytes / 1e6:.0f} MB {transfer:.1f} s, GNU tar extraction"
                      f" of {raw / 1e6:.0f} MB {extract:.1f} s"))
