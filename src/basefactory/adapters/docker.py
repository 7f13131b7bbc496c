"""The one place that talks to Docker.

Every call goes through `cmd.run` with the detected client: builds and pushes need
streamed logs, BuildKit through a pre-23 client and `--network host`, and a query is one
`docker image inspect` (see DESIGN.md on why python-on-whales is not used).

BuildKit is required (cache mounts, secrets). Two kinds of client build with it: one
with the buildx plugin (`docker buildx build --load`), and a pre-23 client with
DOCKER_BUILDKIT=1 (Debian's docker.io 20.10). A 23+ client without buildx cannot, so the
first `docker` on PATH is never assumed to work.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basefactory.adapters import cmd
from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError, ToolError
from basefactory.plumbing.network import raising as retry_unanswered
from basefactory.plumbing.pids import alive

INSTALL_HINT = (
    "install a Docker client with BuildKit: `apt-get install docker.io` (Debian), or"
    " docker with the buildx plugin; then `basefactory up`"
)


@dataclass(frozen=True)
class ClientInfo:
    path: str
    version: str
    buildx: bool

    @property
    def builder(self) -> str:
        return "buildx" if self.buildx else "DOCKER_BUILDKIT=1"


def _candidates(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    seen: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
        path = os.path.join(directory, "docker")
        real = os.path.realpath(path)
        if os.access(path, os.X_OK) and real not in (os.path.realpath(s) for s in seen):
            seen.append(path)
    return seen


def _client_info(path: str) -> ClientInfo | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+\.\d+[\w.+~-]*)", out.stdout)
    if out.returncode != 0 or not m:
        return None
    try:
        bx = subprocess.run([path, "buildx", "version"], capture_output=True, timeout=10)
        has_buildx = bx.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        has_buildx = False
    return ClientInfo(path=path, version=m.group(1), buildx=has_buildx)


@functools.cache
def detect_client(explicit: str | None = None) -> ClientInfo:
    """The first client that builds with BuildKit: buildx, or a classic pre-23 client."""
    tried: list[str] = []
    for path in _candidates(explicit):
        info = _client_info(path)
        if info is None:
            tried.append(f"{path} (does not run)")
            continue
        major = int(info.version.split(".")[0])
        if info.buildx or major < 23:
            return info
        tried.append(f"{path} {info.version} (no buildx, and 23+ needs it for BuildKit)")
    detail = "; ".join(tried) if tried else "no `docker` on PATH"
    raise ToolError(f"no Docker client that builds with BuildKit: {detail}", hint=INSTALL_HINT)


# who runs a container: "<host>:<pid>" of the basefactory process (see reap_orphans)
OWNER_LABEL = "org.basefactory.owner"
# Linux's limit on one argument of a command (MAX_ARG_STRLEN)
MAX_ARG = 131072


class Docker:
    def __init__(self, client: ClientInfo, *, host: str | None = None, name: str = "local") -> None:
        self.client = client
        self.host = host  # DOCKER_HOST of another engine; None: the default one
        self.name = name

    @property
    def env(self) -> dict[str, str]:
        env = {} if self.client.buildx else {"DOCKER_BUILDKIT": "1"}
        if self.host:
            env["DOCKER_HOST"] = self.host
        return env

    def _plain(self, args: Sequence[str], timeout: float | None = None
               ) -> subprocess.CompletedProcess[str]:
        """A quick query whose failure the caller interprets (not through cmd.run)."""
        return subprocess.run([self.client.path, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env})

    def _run(self, args: Sequence[str], **kwargs: Any) -> cmd.Result:
        env = dict(self.env)
        env.update(kwargs.pop("env", None) or {})
        kwargs.setdefault("hint", "is the Docker engine running? `basefactory up` starts one")
        return cmd.run([self.client.path, *args], env=env, **kwargs)

    # --- engine --------------------------------------------------------------------------

    def server_version(self) -> str | None:
        try:
            out = self._plain(["version", "--format", "{{.Server.Version}}"], timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None

    def login(self, address: str, user: str, password: str) -> None:
        """`docker login` to a registry, unless the client already holds these credentials
        (its config file is read first: a login rewrites it and costs a round trip)."""
        folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            auths = json.loads((folder / "config.json").read_text()).get("auths") or {}
            if (auths.get(address) or {}).get("auth") == token:
                return
        except (OSError, ValueError, AttributeError):
            pass
        self._run(["login", address, "-u", user, "--password-stdin"], stdin=password,
                  secrets=[password], echo=False,
                  hint=f"check the registry's credentials: is {address} this factory's"
                       " registry? (`basefactory status`)")

    def pull(self, ref: str) -> bool:
        return self._plain(["pull", ref]).returncode == 0

    def pull_required(self, ref: str, *, hint: str) -> None:
        self._run(["pull", ref], echo=False, hint=hint)

    def import_file(self, tarball: Path, ref: str) -> None:
        self._run(["import", str(tarball), ref], echo=False)

    def require_engine(self) -> str:
        version = self.server_version()
        if version is None:
            where = f" at {self.host}" if self.host else ""
            raise ServiceError(
                f"the Docker engine is not answering (builder {self.name}{where}:"
                f" `{self.client.path} version`)",
                hint="run `basefactory up` (starts dockerd when run as root), or start Docker",
            )
        return version

    # --- images --------------------------------------------------------------------------

    def build(
        self,
        context: Path,
        *,
        dockerfile: Path,
        tags: Sequence[str],
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
        secrets: Mapping[str, Path] | None = None,
        network: str = "host",
        log_file: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        no_cache: bool = False,
        target: str | None = None,
    ) -> str:
        """Build with BuildKit; return the image id. Secrets are files mounted at build time."""
        iidfile = (log_file.parent if log_file else context) / f".iid-{uuid.uuid4().hex}"
        args: list[str] = ["buildx", "build", "--load"] if self.client.buildx else ["build"]
        args += ["--progress", "plain", "--network", network, "-f", str(dockerfile)]
        args += ["--iidfile", str(iidfile)]
        for tag in tags:
            args += ["-t", tag]
        for key, value in sorted((labels or {}).items()):
            if len(key) + len(value.encode()) + 1 >= MAX_ARG:
                raise ToolError(f"label {key} is {len(value.encode())} bytes: one argument may"
                                f" be at most {MAX_ARG} bytes on Linux",
                                hint="put less in the label (a digest of the content instead)")
            args += ["--label", f"{key}={value}"]
        for key, value in sorted((build_args or {}).items()):
            args += ["--build-arg", f"{key}={value}"]
        for sid, path in sorted((secrets or {}).items()):
            args += ["--secret", f"id={sid},src={path}"]
        if no_cache:
            args.append("--no-cache")
        if target:
            args += ["--target", target]
        args.append(str(context))
        try:
            # a pip in a RUN step that could not reach the index is retried (the layers
            # already built come from the cache); any other failure is the build's own
            retry_unanswered(
                lambda: self._run(args, log_file=log_file, on_line=on_line,
                                  echo=log_file is None,
                                  hint="read the build log above; fix the Dockerfile or its inputs"),
                what=f"the build of {tags[0] if tags else context}",
                index=(build_args or {}).get("INDEX_URL", "of the build"),
                errors=(ToolError,), message=str)
            return iidfile.read_text().strip()
        finally:
            iidfile.unlink(missing_ok=True)

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        # a direct `docker image inspect`: on the no-op path of every publish
        out = self._plain(["image", "inspect", ref])
        if out.returncode != 0:
            if "No such image" in out.stderr or "No such object" in out.stderr:
                return None
            raise ServiceError(f"`docker image inspect {ref}` failed: {out.stderr.strip()}",
                               hint="is the Docker engine running? `basefactory status`")
        data: list[dict[str, Any]] = json.loads(out.stdout)
        return data[0]

    def image_id(self, ref: str) -> str | None:
        found = self._inspect(ref)
        return str(found["Id"]) if found else None

    def image_inspect(self, ref: str) -> dict[str, Any]:
        found = self._inspect(ref)
        if found is None:
            raise ServiceError(f"no image {ref} on the engine")
        return found

    def image_labels(self, ref: str) -> dict[str, str]:
        found = self._inspect(ref)
        return dict(((found or {}).get("Config") or {}).get("Labels") or {})

    def tag(self, source: str, target: str) -> None:
        self._run(["tag", source, target], echo=False)

    def push(self, ref: str, *, log_file: Path | None = None,
             on_line: Callable[[str], None] | None = None) -> None:
        self._run(["push", ref], log_file=log_file, on_line=on_line,
                  hint="is the registry up? `basefactory status` shows it")

    def remove_image(self, ref: str) -> None:
        self._run(["image", "rm", "--force", ref], check=False, echo=False)

    def reap_orphans(self) -> list[str]:
        """Remove the containers a killed basefactory process on this host left running
        (`docker run --rm` removes a container when it ends, not when its client is
        killed): an orphaned fit or audit keeps burning CPU and holds files. Containers
        of live processes, and of other hosts sharing the engine, are left alone."""
        out = self._plain(["ps", "-a", "--filter", f"label={OWNER_LABEL}",
                           "--format", f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}'])
        host = socket.gethostname()
        doomed = []
        for line in out.stdout.splitlines():
            cid, _, label = line.partition(" ")
            who, _, pid = label.rpartition(":")
            if who == host and pid.isdigit() and not alive(int(pid)):
                doomed.append(cid)
        if doomed:
            self._run(["rm", "--force", *doomed], check=False, echo=False)
            log.detail(f"removed {len(doomed)} container(s) a killed run left behind")
        return doomed

    def copy_from_image(self, ref: str, source: str, dest: Path) -> None:
        """Copy a path out of an image (via a created, never started container)."""
        name = f"basefactory-copy-{uuid.uuid4().hex[:12]}"
        self._run(["create", "--name", name, ref, "true"], echo=False)
        try:
            self._run(["cp", f"{name}:{source}", str(dest)], echo=False)
        finally:
            self._run(["rm", "--force", name], check=False, echo=False)

    # --- containers ----------------------------------------------------------------------

    def run(
        self,
        image: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[Path, str, str]] = (),
        network: str = "host",
        log_file: Path | None = None,
        check: bool = True,
        hint: str | None = None,
        entrypoint: str | None = None,
        echo: bool = True,
    ) -> cmd.Result:
        """`docker run --rm` one command; volumes are (host path, container path, mode)."""
        args = ["run", "--rm", "--network", network, "--label", f"{OWNER_LABEL}={owner()}"]
        if entrypoint is not None:
            args += ["--entrypoint", entrypoint]
        for key, value in sorted((env or {}).items()):
            args += ["-e", f"{key}={value}"]
        for host, inside, mode in volumes:
            args += ["-v", f"{host}:{inside}:{mode}"]
        args += [image, *argv]
        return self._run(args, log_file=log_file, check=check, hint=hint,
                         echo=echo and log_file is None)

    def run_script(
        self,
        image: str,
        argv: Sequence[str],
        *,
        files: Mapping[str, Path | str],
        folder: Path,
        mount: str = "/bf",
        env: Mapping[str, str] | None = None,
        network: str = "host",
        log_file: Path | None = None,
    ) -> cmd.Result:
        """How every in-container script runs (audit, SBOM, smoke test, fit, wheel test):
        `files` (name -> a file to copy, or the text to write) in a fresh `folder`, mounted
        read-only at `mount`, then `run` without raising (the caller reads the exit code
        and the output)."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copy2(content, folder / name)
            else:
                (folder / name).write_text(content)
        return self.run(image, argv, env=env, volumes=[(folder, mount, "ro")], network=network,
                        log_file=log_file, check=False)

def owner() -> str:
    """This process, as the label of the containers it runs: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def which_dockerd() -> str | None:
    return shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if os.access("/usr/sbin/dockerd", os.X_OK) else None
    )
