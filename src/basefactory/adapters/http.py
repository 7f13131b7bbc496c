"""httpx clients for the index and the registry, sharing one lazily built TLS context.

Building an SSL context costs ~60 ms; `basefactory up` talks to two services over plain
HTTP on loopback and must answer in well under a second, so TLS is set up only for
https URLs, once.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _tls() -> ssl.SSLContext:
    # the system store (and SSL_CERT_FILE), which holds a corporate proxy's CA
    return ssl.create_default_context()


def client(base_url: str, *, timeout: float) -> httpx.Client:
    verify: ssl.SSLContext | bool = _tls() if base_url.startswith("https:") else False
    return httpx.Client(base_url=base_url, timeout=timeout, verify=verify)
