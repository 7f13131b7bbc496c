"""adapters/codec.py: a gzip stream re-encoded as zstd (or plain) by the real pigz and
zstd, chunk by chunk; a broken stream or a failing source is one clear error."""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from basefactory.adapters.codec import CHUNK, transcode_gzip
from basefactory.plumbing.errors import ToolError

DATA = os.urandom(3 * CHUNK // 2) + b"layer" * 200_000  # more than one chunk, some repeats


def feeder(data: bytes, piece: int = 1 << 16) -> Callable[[Callable[[bytes], object]], None]:
    def fill(write: Callable[[bytes], object]) -> None:
        for i in range(0, len(data), piece):
            write(data[i:i + piece])
    return fill


def collect(chunks: Iterator[bytes]) -> tuple[bytes, int]:
    parts = list(chunks)
    return b"".join(parts), len(parts)


def test_gzip_becomes_zstd_with_the_same_content() -> None:
    out, n = transcode_gzip(feeder(gzip.compress(DATA, 1)), "zstd", collect)
    assert out[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert subprocess.run(["zstd", "-dc"], input=out, capture_output=True,
                          check=True).stdout == DATA
    assert n >= 1


def test_gzip_becomes_plain() -> None:
    out, n = transcode_gzip(feeder(gzip.compress(DATA, 1)), "none", collect)
    assert out == DATA and n >= 2  # streamed: more than one chunk came out


def test_a_corrupt_layer_is_an_error_naming_the_tool() -> None:
    broken = bytearray(gzip.compress(DATA, 1))
    broken[len(broken) // 2: len(broken) // 2 + 64] = b"\0" * 64
    with pytest.raises(ToolError, match="pigz"):
        transcode_gzip(feeder(bytes(broken)), "zstd", collect)


def test_a_failing_source_is_raised_not_hidden() -> None:
    def fill(write: Callable[[bytes], object]) -> None:
        write(gzip.compress(b"x" * 1000)[:20])
        raise ConnectionError("registry went away")

    with pytest.raises(ConnectionError, match="went away"):
        transcode_gzip(fill, "zstd", collect)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="no such layer format"):
        transcode_gzip(feeder(b""), "lz4", collect)
