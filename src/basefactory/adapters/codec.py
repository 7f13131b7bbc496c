"""pigz and zstd: turn a gzip layer into a zstd (or uncompressed) one as a stream, so a
layer of GBs never sits in memory or on disk. zstd runs with all cores (-T0)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO, TypeVar

from basefactory.adapters import cmd
from basefactory.plumbing.errors import ToolError

T = TypeVar("T")
CHUNK = 8 << 20
# the layer media types each target format gets in an OCI manifest
MEDIA_TYPES = {"zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "none": "application/vnd.oci.image.layer.v1.tar"}
HINT = "install pigz and zstd (Debian: apt-get install pigz zstd; `make setup` does)"


def _argvs(to: str) -> list[list[str]]:
    gunzip = [cmd.which("pigz", hint=HINT), "-dc"]
    if to == "none":
        return [gunzip]
    if to == "zstd":
        return [gunzip, [cmd.which("zstd", hint=HINT), "-3", "-T0", "-q", "-c"]]
    raise ValueError(f"no such layer format: {to}")


def transcode_gzip(fill: Callable[[Callable[[bytes], object]], None], to: str,
                   consume: Callable[[Iterator[bytes]], T]) -> T:
    """`fill(write)` writes a gzip stream; `consume(chunks)` reads it re-encoded `to`
    ("zstd" or "none") and its result is returned. A failure of either tool, or of
    `fill`, is one error naming the command."""
    argvs = _argvs(to)
    procs: list[subprocess.Popen[bytes]] = []
    for argv in argvs:
        stdin: int | IO[bytes] = subprocess.PIPE if not procs else procs[-1].stdout  # type: ignore[assignment]
        procs.append(subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    for upstream in procs[:-1]:
        assert upstream.stdout is not None
        upstream.stdout.close()  # the next process holds it; a death upstream reaches it
    head, tail = procs[0], procs[-1]
    assert head.stdin is not None and tail.stdout is not None
    errors: list[BaseException] = []

    def feed() -> None:
        assert head.stdin is not None
        try:
            fill(head.stdin.write)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(exc)
        finally:
            with contextlib.suppress(OSError):  # a killed gunzip closed it first
                head.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = tail.stdout
    try:
        result = consume(iter(lambda: out.read(CHUNK), b""))
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        feeder.join()
        for p in procs:
            p.wait()
    if errors:
        raise errors[0]
    for p, argv in zip(procs, argvs, strict=True):
        if p.returncode != 0:
            stderr = p.stderr.read().decode(errors="replace") if p.stderr else ""
            raise ToolError(f"`{' '.join(argv)}` failed with exit code {p.returncode}:"
                            f" {stderr.strip()[-500:]}", hint=HINT)
    return result
