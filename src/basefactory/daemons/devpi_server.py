"""The embedded devpi-server: initialised once, then run as a managed background process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from basefactory.adapters import cmd
from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.tools import beside_python
from basefactory.config.factory import Factory
from basefactory.daemons.credentials import root_password
from basefactory.daemons.process import ManagedProcess, wait_until
from basefactory.daemons.status import ServiceStatus, service_status
from basefactory.plumbing import log

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def serverdir(factory: Factory) -> Path:
    return factory.state_dir / "devpi"


def secret_file(factory: Factory) -> Path:
    """devpi's server secret, shared by the primary and its replica (which it authorises),
    made once with devpi-gen-secret; stable, so logins survive a restart."""
    path = factory.state_dir / "secrets" / "devpi-server-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd.run([beside_python("devpi-gen-secret"), "--secretfile", str(path)], echo=False)
        path.chmod(0o600)
    return path


def process(factory: Factory) -> ManagedProcess:
    cfg = factory.config.index
    # `primary`: serves devpi's replication protocol, which a read replica follows
    argv = [beside_python("devpi-server"), "--serverdir", str(serverdir(factory)),
            "--host", cfg.host, "--port", str(cfg.port), "--role", "primary",
            "--secretfile", str(secret_file(factory)),
            # only root and the factory's own user may create users and indexes or change
            # an index's settings (devpi lets anyone who reaches it create users otherwise);
            # the factory user keeps each platform's fingerprint in its index's settings
            "--restrict-modify", f"root,{cfg.user}"]
    configfile = factory.root / "index" / "devpi-server.yml"
    if configfile.exists():
        argv += ["--configfile", str(configfile)]
    env = {}
    # devpi's PyPI mirror uses requests/httpx: point them at the system CA store, which
    # holds any corporate proxy's CA; certifi's bundle would not.
    if Path(CA_BUNDLE).exists() and not os.environ.get("SSL_CERT_FILE"):
        env = {"SSL_CERT_FILE": CA_BUNDLE, "REQUESTS_CA_BUNDLE": CA_BUNDLE}
    return ManagedProcess("devpi", argv, factory.state_dir, env=env)


def ensure(factory: Factory) -> None:
    client = DevpiClient(factory.config.index.base_url)
    proc = process(factory)
    if client.ping():
        if _runs_as_configured(proc):
            return
        # started by an older factory without --restrict-modify: anyone could make users
        log.info("restarting devpi-server with --restrict-modify")
        proc.stop()
    directory = serverdir(factory)
    fresh = not (directory / ".nodeinfo").exists()
    if fresh:
        log.info(f"initialising devpi in {directory}")
        cmd.run([beside_python("devpi-init"), "--serverdir", str(directory)], echo=False,
                hint="devpi-server is a dependency of basefactory: `make setup` installs it")
    if proc.pid() is None:
        log.info(f"starting devpi-server on {factory.config.index.base_url}")
        proc.start()
    wait_until(client.ping, timeout=60, what="devpi-server", process=proc, interval=0.2)
    if fresh:
        # devpi-init leaves root without a password: set one at once, over loopback
        client.login("root", "")
        client.set_password("root", root_password(factory))
    warm_mirror(factory)


def _runs_as_configured(proc: ManagedProcess) -> bool:
    """False where our devpi runs with another command line (read from /proc); a devpi
    this factory did not start is not ours to judge."""
    pid = proc.pid()
    if pid is None:
        return True
    try:
        running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return b"--restrict-modify" in running


def warm_mirror(factory: Factory) -> None:
    """Load PyPI's project list into the mirror before any build asks for a package.

    After each start, devpi fetches the mirror's whole project list on the first request
    for a project; that takes longer than pip's read timeout, and a request made
    meanwhile is answered "does not exist". So `up` asks first and waits for the answer.
    """
    cfg = factory.config.index
    with log.phase(f"load the project list of {cfg.mirror}"), \
            DevpiClient(cfg.base_url, timeout=600) as client:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if client.simple_has(cfg.mirror, "pip"):
                return
            time.sleep(2)
    log.warning(f"{cfg.mirror} did not list `pip` within 10 minutes: is PyPI reachable?")


def replica_process(factory: Factory) -> ManagedProcess:
    cfg = factory.config.index
    argv = [beside_python("devpi-server"), "--serverdir", str(factory.state_dir / "devpi-replica"),
            "--primary-url", cfg.base_url, "--host", cfg.host, "--port", str(cfg.replica_port),
            "--secretfile", str(secret_file(factory)),
            # only root and the factory's own user may create users and indexes or change
            # an index's settings (devpi lets anyone who reaches it create users otherwise);
            # the factory user keeps each platform's fingerprint in its index's settings
            "--restrict-modify", f"root,{cfg.user}"]
    return ManagedProcess("devpi-replica", argv, factory.state_dir, env=process(factory).env)


def ensure_replica(factory: Factory) -> str:
    """Start the read replica if configured and not running; return its URL."""
    url = factory.config.index.replica_url
    assert url is not None
    client = DevpiClient(url)
    if client.ping():
        return url
    directory = factory.state_dir / "devpi-replica"
    if not (directory / ".nodeinfo").exists():
        cmd.run([beside_python("devpi-init"), "--serverdir", str(directory), "--role", "replica",
                 "--primary-url", factory.config.index.base_url], echo=False)
    proc = replica_process(factory)
    if proc.pid() is None:
        log.info(f"starting the devpi replica on {url}")
        proc.start()
    wait_until(client.ping, timeout=120, what="the devpi replica", process=proc, interval=0.3)
    return url


def stop(factory: Factory) -> bool:
    replica_process(factory).stop()
    return process(factory).stop()


def status(factory: Factory) -> ServiceStatus:
    cfg = factory.config.index
    return service_status("devpi", embedded=cfg.embedded, address=cfg.base_url,
                          process=process(factory), client=DevpiClient(cfg.base_url, tls=cfg.tls),
                          detail=f"indexes {cfg.user}/{cfg.common}, {cfg.user}/<platform>")
