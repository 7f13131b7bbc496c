"""Registries and indexes as teams run them, made real on this host for the tests:

- a CA made for the test session, and certificates it signs;
- a token server implementing Docker's token authentication specification: Basic
  credentials in, an RS256 JWT out whose `access` claim grants the intersection of what
  was asked and what the user may do, signed by a key whose certificate is the
  registry's `rootcertbundle` (the x5c header carries it);
- Debian's distribution registry configured with `auth: token` and `http.tls`;
- nginx terminating TLS in front of a service (devpi, or the registry with a rate limit
  that answers 429 with Retry-After);
- a second devpi-server run by "its own admin" (`--restrict-modify root`, root's password
  known only to the test), which the factory reaches only through nginx.

Nothing here is a stand-in for the protocol: the registry, nginx and devpi are the real
programs; the token server is the one piece a site would run as Harbor's or GitLab's
auth service, written to the specification.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from basefactory.adapters.tools import beside_python
from tests.helpers import port, wait_http

SERVICE = "basefactory-test-registry"
ISSUER = "basefactory-test-token-server"


# --- a CA and its certificates -------------------------------------------------------------

@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _write(folder: Path, name: str, cert: Any, key: Any) -> Pem:
    from cryptography.hazmat.primitives import serialization

    pem = Pem(folder / f"{name}.crt", folder / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    pem.key.chmod(0o600)
    return pem


def make_ca(folder: Path, name: str = "basefactory test CA") -> Pem:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _write(folder, "ca", cert, key)


def issue(ca: Pem, folder: Path, name: str, *, rsa: bool = False) -> Pem:
    """A certificate for 127.0.0.1/localhost signed by `ca` (an RSA key where a JWT
    signer needs RS256)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = (rsa_keys.generate_private_key(public_exponent=65537, key_size=2048) if rsa
           else ec.generate_private_key(ec.SECP256R1()))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return _write(folder, name, cert, key)


# --- the token server ----------------------------------------------------------------------

@dataclass
class User:
    password: str
    # repository name prefix -> actions this user may be granted there ("*" for all)
    rights: dict[str, set[str]]
    catalog: bool = True


@dataclass
class TokenServer:
    """Docker's token authentication specification, as Harbor's or GitLab's auth service
    serves it. `issued` records (user, scope) of every token, for the tests."""

    signer: Pem
    users: dict[str, User]
    lifetime_s: int = 300
    issued: list[tuple[str, str]] = field(default_factory=list)
    # the next N tokens carry an `exp` already past the registry's leeway: what a client
    # meets when its token expires mid-run (or the realm's clock is ahead)
    expire_next: int = 0
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    _key: Any = None
    _x5c: str = ""
    _server: ThreadingHTTPServer | None = None
    url: str = ""

    def grant(self, user: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "registry" and name == "catalog":
            ok = user is not None and self.users[user].catalog
            return {"type": kind, "name": name, "actions": ["*"] if ok else []}
        if kind != "repository":
            return None
        allowed: set[str] = set()
        if user is not None:
            for prefix, rights in self.users[user].rights.items():
                if name.startswith(prefix):
                    allowed |= rights
        wanted = [a for a in actions.split(",") if a]
        return {"type": kind, "name": name,
                "actions": [a for a in wanted if a in allowed or "*" in allowed]}

    def token(self, user: str | None, scopes: list[str], *, offline: bool = False
              ) -> dict[str, Any]:
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        now = int(time.time())
        access = [g for s in scopes if (g := self.grant(user, s)) is not None]
        for s in scopes:
            self.issued.append((user or "", s))
        exp = now + self.lifetime_s
        if self.expire_next > 0:
            self.expire_next -= 1
            exp = now - 300
        if self._key is None:  # loaded once, as a realm keeps its key in memory
            self._key = serialization.load_pem_private_key(self.signer.key.read_bytes(), None)
            self._x5c = base64.b64encode(x509.load_pem_x509_certificate(
                self.signer.cert.read_bytes()).public_bytes(serialization.Encoding.DER)).decode()
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": exp,
                  "nbf": now - 5, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        value = jwt.encode(claims, self._key, algorithm="RS256",  # type: ignore[arg-type]
                           headers={"x5c": [self._x5c]})
        answer = {"token": value, "access_token": value, "expires_in": self.lifetime_s,
                  "issued_at": dt.datetime.now(dt.UTC).isoformat()}
        if offline and user is not None:
            # a refresh token (what `docker login` stores as `identitytoken`)
            refresh = uuid.uuid4().hex
            self.refresh_tokens[refresh] = user
            answer["refresh_token"] = refresh
        return answer

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def known(self, name: str, password: str) -> bool:
                user = server.users.get(name)
                return user is not None and user.password == password

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                """The token specification: Basic credentials (or none), scopes in the
                query; `offline_token=true` adds a refresh token, as `docker login` asks."""
                query = parse_qs(urlparse(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if not self.known(name, password):
                        self.answer(401, {"details": "authentication failed"})
                        return
                    user = name
                self.answer(200, server.token(user, query.get("scope", []), offline=query.get(
                    "offline_token", [""])[0] == "true"))

            def do_POST(self) -> None:  # noqa: N802
                """The OAuth2 variant (what containerd's and BuildKit's resolvers, and the
                factory with an identity token, send): a form with grant_type password or
                refresh_token, scopes space-separated."""
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                user: str | None = None
                if grant == "password":
                    name, password = form.get("username", [""])[0], form.get("password", [""])[0]
                    if not self.known(name, password):
                        self.answer(401, {"error": "invalid_grant"})
                        return
                    user = name
                elif grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                    if user is None:
                        self.answer(401, {"error": "invalid_grant"})
                        return
                else:
                    self.answer(400, {"error": "unsupported_grant_type"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                self.answer(200, server.token(user, scopes, offline=form.get(
                    "access_type", [""])[0] == "offline"))

        self._server = ThreadingHTTPServer(("127.0.0.1", port(5600)), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --- processes -----------------------------------------------------------------------------

class Service:
    """A server process of the test's own, its log in its folder, stopped at the end."""

    def __init__(self, name: str, argv: list[str], folder: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.folder = name, folder
        self.log = folder / f"{name}.log"
        self.proc = subprocess.Popen(argv, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def wait(self, url: str, *, verify: object = False, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(url, verify=verify, timeout=2)  # type: ignore[arg-type]
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} does not answer {url}:"
                                       f" {self.log.read_text()[-2000:]}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def token_registry(folder: Path, ca: Pem, tokens: TokenServer) -> tuple[Service, str]:
    """The distribution registry with `auth: token` over TLS; (service, host:port)."""
    folder.mkdir(parents=True, exist_ok=True)
    tls = issue(ca, folder, "registry")
    signer_bundle = folder / "token-signers.pem"
    signer_bundle.write_bytes(tokens.signer.cert.read_bytes())
    address = f"127.0.0.1:{port(5443)}"
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")},
                    "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": address, "tls": {"certificate": str(tls.cert), "key": str(tls.key)}},
        "auth": {"token": {"realm": tokens.url, "service": SERVICE, "issuer": ISSUER,
                           "rootcertbundle": str(signer_bundle)}},
    }
    (folder / "config.yml").write_text(json.dumps(config, indent=2))
    binary = shutil.which("docker-registry") or "registry"
    service = Service("token-registry", [binary, "serve", str(folder / "config.yml")], folder)
    service.wait(f"https://{address}/v2/", verify=str(ca.cert))
    return service, address


def nginx(folder: Path, ca: Pem, name: str, upstream: str, *, rate_limit: bool = False,
          outside_header: bool = False, client_certs: bool = False) -> tuple[Service, str]:
    """nginx terminating TLS (a certificate of `ca`) in front of `upstream`; optionally
    limiting requests to a few a second, answering 429 with `Retry-After: 1`, as
    registries behind a rate limit do. (service, https base URL)."""
    folder.mkdir(parents=True, exist_ok=True)
    tls = issue(ca, folder, name)
    listen = port(8443 if not (rate_limit or client_certs) else 8444)
    base = f"https://127.0.0.1:{listen}"
    limit_zone = "limit_req_zone $binary_remote_addr zone=slow:1m rate=4r/s;" if rate_limit else ""
    limit = ("limit_req zone=slow burst=2 nodelay; limit_req_status 429;"
             " add_header Retry-After 1 always;") if rate_limit else ""
    outside = f"proxy_set_header X-outside-url {base};" if outside_header else ""
    # mutual TLS: only clients with a certificate of the test CA get through
    mutual = (f"ssl_client_certificate {ca.cert}; ssl_verify_client on;"
              if client_certs else "")
    (folder / "nginx.conf").write_text(f"""
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  {limit_zone}
  server {{
    listen 127.0.0.1:{listen} ssl;
    ssl_certificate {tls.cert};
    ssl_certificate_key {tls.key};
    {mutual}
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    location / {{
      {limit}
      proxy_pass {upstream};
      proxy_ssl_verify off;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Real-IP $remote_addr;
      {outside}
      proxy_read_timeout 600s;
    }}
  }}
}}
""")
    service = Service(f"nginx-{name}", ["nginx", "-p", str(folder), "-c",
                                        str(folder / "nginx.conf"), "-g", "daemon off;"], folder)
    service.wait(f"{base}/", verify=str(ca.cert))
    return service, base


def admin_devpi(folder: Path, root_password: str) -> tuple[Service, str]:
    """A devpi-server with its own admin: root's password set at init, users and indexes
    only by root (--restrict-modify root), on a loopback port only nginx talks to."""
    folder.mkdir(parents=True, exist_ok=True)
    server_dir = folder / "server"
    subprocess.run([beside_python("devpi-init"), "--serverdir", str(server_dir),
                    "--root-passwd", root_password], check=True,
                   capture_output=True)
    listen = port(3150)
    service = Service("admin-devpi", [
        beside_python("devpi-server"), "--serverdir", str(server_dir), "--host", "127.0.0.1",
        "--port", str(listen), "--restrict-modify", "root"], folder)
    wait_http(f"http://127.0.0.1:{listen}/+api")
    return service, f"http://127.0.0.1:{listen}"


def trust_in_engine(address: str, ca: Pem) -> Path:
    """Make the Docker engine trust the test CA for `address`, as a site does
    (/etc/docker/certs.d/HOST:PORT/ca.crt, read at each pull and push)."""
    folder = Path("/etc/docker/certs.d") / address
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca.cert, folder / "ca.crt")
    return folder
