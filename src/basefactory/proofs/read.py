"""The one reader of proofs, for the catalog and `ls`: wheels' proofs from devpi,
images' proofs from their labels (and, for fits, the artifact beside the image).

Attached records never change once written (devpi keeps each under its own URL), so a
record is fetched once per process; `seed` hands over what a saved snapshot already holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from basefactory.adapters.devpi_api import DevpiClient, ReleaseFile
from basefactory.proofs import store_devpi, store_labels
from basefactory.proofs.model import Kind, Proof


class ProofReader:
    def __init__(self, devpi: DevpiClient) -> None:
        self.devpi = devpi
        self._records: dict[str, Proof | None] = {}
        self._lock = threading.Lock()

    def seed(self, proofs: Iterable[Proof]) -> None:
        with self._lock:
            for p in proofs:
                if p.source:
                    self._records[p.source] = p

    def seed_records(self, records: dict[str, str]) -> None:
        """Records read in bulk (URL -> text): `wheel` then finds them without a request."""
        parsed: dict[str, Proof | None] = {}
        with self._lock:  # a record never changes under its URL: parsed once per process
            new = {url: text for url, text in records.items() if url not in self._records}
        for url, text in new.items():
            try:
                parsed[url] = store_devpi.parse(url, text)
            except ValueError:
                parsed[url] = None  # not a proof: skipped, as `wheel` skips it
        with self._lock:
            self._records.update(parsed)

    def wheel(self, file: ReleaseFile) -> list[Proof]:
        """The proofs attached to a wheel file; a record that is not a proof is skipped, and
        so is a proof of another file (its sha256 is not this file's: attached to the wrong
        file by a reader's or a writer's mistake, it proves nothing about this one)."""
        proofs = []
        for url in file.toxresults:
            if url not in self._records:
                try:
                    proof: Proof | None = store_devpi.read(self.devpi, url)
                except ValueError:
                    proof = None
                with self._lock:
                    self._records[url] = proof
            found = self._records[url]
            # a file devpi gave no sha256 for cannot be compared: its records are kept
            if found is not None and (not file.sha256 or found.subject.of_file(file.sha256)):
                proofs.append(found)
        return proofs

    @staticmethod
    def image(labels: dict[str, str], *, image: str, platform: str, source: str = ""
              ) -> list[Proof]:
        return store_labels.read(labels, image=image, platform=platform, source=source)


def first(proofs: Iterable[Proof], kind: Kind) -> Proof | None:
    """The newest proof of a kind (proofs of one kind on one subject are made again only
    when the earlier one is gone, e.g. a retest after a crash)."""
    of_kind = [p for p in proofs if p.kind == kind]
    return max(of_kind, key=lambda p: p.at) if of_kind else None


def proven(proofs: Iterable[Proof], kind: Kind) -> bool:
    found = first(proofs, kind)
    return found is not None and found.passed
