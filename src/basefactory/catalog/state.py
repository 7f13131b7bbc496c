"""The catalog's view of the world: the newest good snapshot, refreshed in the background.

Requests never wait on the registry or devpi: they read the snapshot in memory. When a
refresh fails (a source is down) the last good snapshot stays and `error` feeds the
page's banner. The snapshot is also saved to disk, so a restarted catalog answers at
once from it while the first refresh runs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from basefactory.catalog.snapshot import ImageCell, Reader, Snapshot, Tag, Wheel
from basefactory.proofs import Proof

FIRST_REFRESH_DELAY = 1.0  # seconds; see start()


class Catalog:
    def __init__(self, reader: Reader, *, cache_file: Path | None = None,
                 ttl: float = 10.0) -> None:
        self.reader = reader
        self.cache_file = cache_file
        self.ttl = ttl
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.version = 0
        self.refreshed_at: str | None = None  # the last read of both sources that worked
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.derived: dict[Any, Any] = {}  # per-version caches (rendered pages, replies)

    def start(self) -> None:
        self._load_cache()
        # With a saved snapshot the first pages come from it; the first full read of the
        # sources (hundreds of requests in threads, competing for the GIL) waits a moment
        # so that it does not slow those pages down.
        delay = FIRST_REFRESH_DELAY if self.snapshot is not None else 0.0
        self._thread = threading.Thread(target=self._loop, args=(delay,),
                                        name="catalog-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.reader.close()

    def _loop(self, delay: float) -> None:
        self._stop.wait(delay)
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.ttl)

    def refresh(self) -> bool:
        """Read the sources; True when the snapshot changed."""
        try:
            fresh = self.reader.read()
        except Exception as exc:  # any failure of a source: keep the last good data
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                self.version += 1  # the banner changed
                self.derived = {}
            return False
        with self._lock:
            changed = self.snapshot is None or not _same(self.snapshot, fresh)
            if changed or self.error is not None:  # new data, or the banner goes away
                self.version += 1
                self.derived = {}
            if changed:
                self.snapshot = fresh
            self.error = None
            self.refreshed_at = fresh.taken_at
        if changed:
            self._save_cache(fresh)
        return changed

    # --- disk cache ----------------------------------------------------------------------

    def _save_cache(self, snapshot: Snapshot) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(snapshot)))
        tmp.replace(self.cache_file)

    def _load_cache(self) -> None:
        if self.cache_file is None or not self.cache_file.exists():
            return
        try:
            data = json.loads(self.cache_file.read_text())
            snapshot = from_dict(data)
        except (OSError, ValueError, TypeError, KeyError):
            return
        self.reader.proofs.seed(p for w in snapshot.wheels for p in w.proofs)
        with self._lock:
            if self.snapshot is None:
                self.snapshot = snapshot
                self.version += 1


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Equal content, taken_at aside. Field by field, not through asdict: a refresh runs
    every few seconds beside the requests, and copying thousands of wheels into dicts
    held the GIL long enough to show in the latency's tail. The reader hands back the same
    wheel objects while devpi's serial stands, so comparing them is mostly identity."""
    return (a.platforms == b.platforms and a.wheels == b.wheels and a.images == b.images
            and a.registry == b.registry and a.index == b.index and a.errors == b.errors
            and a.fit_inputs == b.fit_inputs)


def from_dict(data: dict[str, Any]) -> Snapshot:
    images = {
        name: {p: ImageCell(**{**cell, "tags": [Tag(**t) for t in cell["tags"]],
                                "proofs": [Proof.from_dict(x) for x in cell["proofs"]]})
               for p, cell in cells.items()}
        for name, cells in data["images"].items()
    }
    return Snapshot(taken_at=data["taken_at"], registry=data["registry"], index=data["index"],
                    platforms=data["platforms"], images=images,
                    wheels=[Wheel(**{**w, "proofs": [Proof.from_dict(x) for x in w["proofs"]]})
                            for w in data["wheels"]],
                    errors=data.get("errors", []), index_user=data.get("index_user", "factory"),
                    fit_inputs=data.get("fit_inputs", {}))
