"""Proofs about a wheel file, attached to that file in devpi (its toxresult mechanism):
they live and die with the file, replicate with the index, and need no other store."""

from __future__ import annotations

import json

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.proofs.model import Proof


def attach(devpi: DevpiClient, file_url: str, proof: Proof) -> None:
    devpi.attach_test_result(file_url, json.dumps(proof.to_dict(), sort_keys=True))


def read(devpi: DevpiClient, url: str) -> Proof:
    """One attached record; ValueError when it is not a proof of any schema."""
    return Proof.from_dict(devpi.test_record(url), source=url)


def parse(url: str, text: str) -> Proof:
    """A record as read in bulk (`DevpiClient.index_wheels`); ValueError as `read`."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"the record at {url} is not a JSON object")
    return Proof.from_dict(data, source=url)
