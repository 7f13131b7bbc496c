"""Issue 38: a no-op publish into a token registry over TLS costs what it costs into the
embedded one (tokens cached per scope, not fetched per request).

One run, both sides, the same publish (`--only api-lean --only torchsort` on the CPU
platform, fits included), the same index (the embedded devpi):
- embedded: this factory's own registry (htpasswd Basic, plain HTTP on loopback);
- token: Debian's distribution registry with `auth: token` and TLS, its token server
  (tests/external_services.py, the one the test tier uses), the factory configured for
  it in a copy of factory.toml.
And the client alone: the registry reads of a no-op publish with the token cache, beside
the naive flow (a 401, a token, the request again, for every request), against the same
token registry."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import httpx
from tests.external_services import TokenServer, User, issue, make_ca, token_registry, trust_in_engine

from basefactory.adapters import http
from basefactory.adapters.registry_api import MANIFEST_TYPES, Registry
from basefactory.adapters.registry_auth import Credentials, RegistryAuth, parse_challenge
from basefactory.daemons.credentials import index_password
from bench.common import ROOT, Figure, Report, session, timed

ONLY = ["--only", "api-lean", "--only", "torchsort"]
PLATFORM = "cpu-py311-torch2.13"
PASSWORD = "bench-token-pw"


def _publish(config: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config), "-q",
                           "publish", "--platform", PLATFORM, *ONLY], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"publish with {config} failed:\n{done.stderr[-3000:]}")


def _token_factory(folder: Path, address: str, ca: Path) -> Path:
    """factory.toml with its [index] and [registry] replaced: the embedded devpi reached
    as an existing one, the token registry."""
    text = (ROOT / "factory.toml").read_text()
    services = textwrap.dedent(f"""
        [index]
        embedded = false
        url = "http://127.0.0.1:3141"
        password_env = "BENCH_INDEX_PASSWORD"

        [registry]
        embedded = false
        url = "https://{address}"
        ca_bundle = "{ca}"
        user = "factory"
        password_env = "BENCH_TOKEN_PASSWORD"

        """)
    body = text[:text.index("[index]")] + services + text[text.index("[engine]"):]
    body = body.replace('state_dir = ".factory"', f'state_dir = "{folder / "state"}"')
    path = folder / "factory.toml"
    path.write_text(body)
    for name in ("recipes", "images", "index"):
        if (ROOT / name).exists() and not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name)
    return path


def _reads(registry: Registry, repos: list[str]) -> None:
    for repo in repos:
        registry.tags(repo)
        registry.digest(repo, PLATFORM)
        registry.manifest(repo, PLATFORM)


def _naive_reads(base: str, ca: Path, repos: list[str]) -> None:
    """What a hand-written client does: each request answered 401, a token, once more."""
    with httpx.Client(verify=str(ca), timeout=30) as client:
        def get(path: str, method: str = "GET") -> None:
            response = client.request(method, f"{base}{path}", headers={"Accept": MANIFEST_TYPES})
            if response.status_code == 401:
                challenge = parse_challenge(response.headers["WWW-Authenticate"])
                assert challenge is not None
                token = client.get(challenge.params["realm"], auth=("factory", PASSWORD), params={
                    "service": challenge.params["service"],
                    "scope": challenge.params.get("scope", "")}).json()["token"]
                response = client.request(method, f"{base}{path}", headers={
                    "Accept": MANIFEST_TYPES, "Authorization": f"Bearer {token}"})
            assert response.status_code == 200, (path, response.status_code)

        for repo in repos:
            get(f"/v2/{repo}/tags/list")
            get(f"/v2/{repo}/manifests/{PLATFORM}", "HEAD")
            get(f"/v2/{repo}/manifests/{PLATFORM}")


def bench(report: Report) -> None:
    embedded = ROOT / "factory.toml"
    env = {**os.environ}
    _publish(embedded, env)  # the embedded side, published once (later runs: current)
    with tempfile.TemporaryDirectory(prefix="bench-token-") as tmp:
        folder = Path(tmp)
        ca = make_ca(folder / "ca")
        tokens = TokenServer(issue(ca, folder / "ca", "signer", rsa=True),
                             {"factory": User(PASSWORD, {"": {"*"}})}).start()
        service, address = token_registry(folder / "registry", ca, tokens)
        trust = trust_in_engine(address, ca)
        try:
            config = _token_factory(folder, address, ca.cert)
            env = {**os.environ, "BENCH_TOKEN_PASSWORD": PASSWORD,
                   "BENCH_INDEX_PASSWORD": index_password(session().factory),
                   "DOCKER_CONFIG": str(folder / "docker")}
            up = subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config),
                                 "-q", "up"], capture_output=True, text=True, env=env)
            assert up.returncode == 0, up.stderr[-3000:]
            _publish(config, env)  # pushes everything once; the no-ops below are timed
            # alternated, so that a slow minute of the machine falls on both sides
            token_runs, embedded_runs = [], []
            for _ in range(3):
                embedded_runs.append(timed(lambda: _publish(embedded, {**os.environ})))
                tokens.issued.clear()
                token_runs.append(timed(lambda: _publish(config, env)))
            issued = len(tokens.issued)
            ours, base = statistics.median(token_runs), statistics.median(embedded_runs)
            report.add(Figure(
                "no-op `publish --only api-lean --only torchsort` into a token registry over"
                f" TLS (median of 3; {issued} token scopes asked in the last run)",
                ours, base, "s", "<= 1.2x the embedded registry", ours <= 1.2 * base,
                "naive side: the same no-op publish into the embedded registry (htpasswd"
                " Basic, plain HTTP), alternated with the token runs"))
            repos = ["factory/base", "factory/slim", "factory/api-lean"]
            tls = http.Tls(ca_bundle=ca.cert)
            with Registry(f"https://{address}", tls=tls, auth=RegistryAuth(
                    lambda: Credentials("factory", PASSWORD, "bench"),
                    verify=http.verify_for("https://x", tls))) as registry:
                _reads(registry, repos)  # the first tokens, as a publish's first reads
                cached = statistics.median(timed(lambda: _reads(registry, repos))
                                           for _ in range(5))
            naive = statistics.median(timed(lambda: _naive_reads(f"https://{address}", ca.cert,
                                                                  repos)) for _ in range(5))
            report.add(Figure(
                f"{3 * len(repos)} registry reads of a no-op publish, token registry (median"
                " of 5)", cached, naive, "s", "faster than a token per request", cached < naive,
                "naive: each request answered 401, a token fetched, the request sent again"))
        finally:
            service.stop()
            tokens.stop()
            shutil.rmtree(trust, ignore_errors=True)
