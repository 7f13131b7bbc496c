"""Build hosts made on this machine for multi-host tests: each a network namespace with
its own Docker engine, reached from here over a veth pair, and reaching the factory's
devpi and registry at the loopback addresses factory.toml gives, through a bridge (as a
remote build host reaches a shared index over the network). Real processes, real
sockets; nothing outside this machine."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
DOCKER = "/usr/bin/docker"


def sh(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


class LoopbackBridge:
    """127.0.0.1:PORT inside a network namespace, forwarded to 127.0.0.1:PORT here. The
    listening socket is made by a thread that entered the namespace (a socket stays in
    the namespace it was made in); connections to this machine's loopback are made from
    the host's namespace."""

    def __init__(self, netns: str, port: int) -> None:
        self.port = port
        made: dict[str, object] = {}

        def inside() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    made["error"] = OSError(ctypes.get_errno(), "setns")
                    return
                made["sock"] = socket.create_server(("127.0.0.1", port))
            finally:
                os.close(fd)
        thread = threading.Thread(target=inside)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]  # type: ignore[misc]
        self.server: socket.socket = made["sock"]  # type: ignore[assignment]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                outer = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                inner.close()
                continue
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(1 << 16):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        src.shutdown(socket.SHUT_RD)


class Host:
    """Network namespace `bfh<n>-<pid>`: 10.231.<n>.2 inside, 10.231.<n>.1 here; a dockerd
    of its own (socket, data-root) started inside it; `ports` of this machine's loopback
    bridged in."""

    def __init__(self, n: int, ports: list[int]) -> None:
        pid = os.getpid()
        self.n = n
        self.netns = f"bfh{n}-{pid}"
        self.veth = f"bfv{n}{pid % 100000}"  # interface names: 15 bytes at most
        self.here, self.there = f"10.231.{n}.1", f"10.231.{n}.2"
        self.root = Path(f"/tmp/bfh{n}-{pid}")  # unix socket paths: 108 bytes at most
        self.docker_host = f"unix://{self.root}/docker.sock"
        self.ports = ports
        self.bridges: list[LoopbackBridge] = []
        self.dockerd: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.stop()
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth-bf",
           "netns", self.netns)
        sh("ip", "addr", "add", f"{self.here}/24", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        for args in (("addr", "add", f"{self.there}/24", "dev", "eth-bf"),
                     ("link", "set", "eth-bf", "up"), ("link", "set", "lo", "up")):
            sh("ip", "-n", self.netns, *args)
        self.bridges = [LoopbackBridge(self.netns, p) for p in self.ports]
        self.root.mkdir(parents=True)
        log = (self.root / "dockerd.log").open("wb")  # noqa: SIM115 (the daemon's life)
        self.dockerd = subprocess.Popen(
            [*self.enter(), shutil.which("dockerd") or "/usr/sbin/dockerd",
             "--host", self.docker_host, "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "d.pid"),
             "--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while subprocess.run([DOCKER, "version"], env=self.env(), capture_output=True).returncode:
            if self.dockerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.5)

    def enter(self) -> list[str]:
        """The prefix that runs a command in this host's network namespace. Not `ip netns
        exec`, which also remounts /sys for it (without the cgroup mounts dockerd needs)."""
        return ["nsenter", f"--net=/var/run/netns/{self.netns}"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.docker_host}

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """A process inside this host (its own process group: killing the group is the
        host going away for everything it ran), with this host's engine."""
        with log.open("wb") as out:
            return subprocess.Popen([*self.enter(), *args], env=self.env(),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def containers(self) -> list[str]:
        done = subprocess.run([DOCKER, "ps", "-q"], env=self.env(), capture_output=True,
                              text=True)
        return done.stdout.split()

    def stop(self) -> None:
        for bridge in self.bridges:
            bridge.close()
        self.bridges = []
        if self.dockerd is not None and self.dockerd.poll() is None:
            for container in self.containers():
                subprocess.run([DOCKER, "rm", "-f", container], env=self.env(),
                               capture_output=True)
            self.dockerd.terminate()
            try:
                self.dockerd.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.dockerd.pid, signal.SIGKILL)
        subprocess.run(["umount", "-R", str(self.root)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
