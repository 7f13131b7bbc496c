"""httpx clients for the index and the registry, with the TLS each service is given.

Building an SSL context costs ~60 ms; `basefactory up` talks to two services over plain
HTTP on loopback and must answer in well under a second, so TLS is set up only for
https URLs, once per setting.
"""

from __future__ import annotations

import functools
import ssl

import httpx

from basefactory.plumbing.errors import ServiceError
from basefactory.plumbing.tls import Tls

SYSTEM = Tls()  # the system store, no client certificate

__all__ = ["SYSTEM", "Tls", "client", "context", "explain", "transport", "verify_for"]


@functools.cache
def context(tls: Tls = SYSTEM) -> ssl.SSLContext:
    try:
        if tls.ca_bundle is not None:
            ctx = ssl.create_default_context(cafile=str(tls.ca_bundle))
        else:
            # the system store (and SSL_CERT_FILE), which holds a corporate proxy's CA
            ctx = ssl.create_default_context()
        if tls.client_cert is not None:
            ctx.load_cert_chain(str(tls.client_cert),
                                str(tls.client_key) if tls.client_key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ServiceError(f"the TLS files of {tls.setting} cannot be used: {exc}",
                           hint=f"check {tls.setting}'s ca_bundle, client_cert and"
                                " client_key (PEM files)") from None
    return ctx


def verify_for(base_url: str, tls: Tls | None = None) -> ssl.SSLContext | bool:
    return context(tls or SYSTEM) if base_url.startswith("https:") else False


def client(base_url: str, *, timeout: float, tls: Tls | None = None,
           transport: httpx.BaseTransport | None = None,
           auth: httpx.Auth | None = None) -> httpx.Client:
    # verify is given with a transport too: httpx builds the transports of the
    # environment's proxies with it (else each loads the default store, ~30 ms)
    return httpx.Client(base_url=base_url, timeout=timeout, verify=verify_for(base_url, tls),
                        auth=auth, transport=transport)


def transport(base_url: str, tls: Tls | None = None) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=verify_for(base_url, tls))


def explain(exc: httpx.HTTPError, what: str, tls: Tls | None) -> str:
    """One line for a failed connection; a certificate not trusted names the CA setting."""
    text = f"{type(exc).__name__}: {exc}"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
        where = (f"the CA bundle {tls.ca_bundle}" if tls and tls.ca_bundle
                 else "the system's CA store")
        setting = tls.setting if tls else "factory.toml"
        return (f"{what}'s TLS certificate is not trusted by {where} ({text});"
                f" set {setting} ca_bundle to the CA that signed it")
    return f"{what} is not answering ({text})"
