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
import contextlib
import functools
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from basefactory.adapters import cmd
from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError, ToolError
from basefactory.plumbing.network import raising as retry_unanswered
from basefactory.plumbing.pids import alive

INSTALL_HINT = (
    "install a Docker client with BuildKit: `apt-get install docker.io` (Debian), or"
    " docker with the buildx plugin; then `basefactory up`"
)

# what docker says when the registry has no such image (or will not say it has one):
# the one failure of a pull that means "not there" rather than "could not ask"
_MISSING = re.compile(r"manifest unknown|name unknown|does not exist|access denied",
                      re.IGNORECASE)


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


# where a client's buildx plugin may be: its presence changes what a client can build
PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")


def _client_key(path: str) -> str | None:
    """What a client's answers depend on: its binary and the buildx plugins it may load.
    None: the binary is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    parts = [os.path.realpath(path), str(st.st_mtime_ns), str(st.st_size)]
    for folder in PLUGIN_DIRS:
        plugin = os.path.join(os.path.expanduser(folder), "docker-buildx")
        try:
            parts.append(f"{plugin}:{os.stat(plugin).st_mtime_ns}")
        except OSError:
            continue
    return "|".join(parts)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "basefactory"


def _cache_file() -> Path:
    return _cache_dir() / "docker-clients.json"


def _auth_entry(folder: Path, address: str) -> dict[str, Any]:
    """The Docker client's config entry for a registry ({} where it has none)."""
    entry = (_read_json(folder / "config.json").get("auths") or {})
    found = entry.get(address) if isinstance(entry, dict) else None
    return found if isinstance(found, dict) else {}


def _login_digest(identity_token: object, password: str) -> str | None:
    """What tells that an identity token was made by a login with this password, no
    weaker a secret than the token itself (which sits in the same folder)."""
    if not isinstance(identity_token, str) or not identity_token:
        return None
    return hashlib.sha256(f"{identity_token}\0{password}".encode()).hexdigest()


def _logins_file(folder: Path) -> Path:
    return _cache_dir() / "logins" / (hashlib.sha256(str(folder.resolve()).encode())
                                      .hexdigest()[:16] + ".json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _cached_client_info(path: str) -> ClientInfo | None:
    """`_client_info`, remembered per binary on disk: the two client processes it costs
    (~75 ms) were a tenth of every no-op command. A changed binary or plugin is asked again."""
    key = _client_key(path)
    if key is None:
        return None
    cache = _cache_file()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    hit = known.get(key) if isinstance(known, dict) else None
    if isinstance(hit, dict) and isinstance(hit.get("version"), str):
        return ClientInfo(path=path, version=hit["version"], buildx=bool(hit.get("buildx")))
    info = _client_info(path)
    if info is not None:
        known = known if isinstance(known, dict) else {}
        known[key] = {"version": info.version, "buildx": info.buildx}
        try:  # a cache that cannot be written only costs the next run the two processes
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            tmp.replace(cache)
        except OSError:
            pass
    return info


@functools.cache
def detect_client(explicit: str | None = None) -> ClientInfo:
    """The first client that builds with BuildKit: buildx, or a classic pre-23 client."""
    tried: list[str] = []
    for path in _candidates(explicit):
        info = _cached_client_info(path)
        if info is None:
            tried.append(f"{path} (does not run)")
            continue
        major = int(info.version.split(".")[0])
        if info.buildx or major < 23:
            return info
        tried.append(f"{path} {info.version} (no buildx, and 23+ needs it for BuildKit)")
    detail = "; ".join(tried) if tried else "no `docker` on PATH"
    raise ToolError(f"no Docker client that builds with BuildKit: {detail}", hint=INSTALL_HINT)


def _current_context() -> str | None:
    """The client's current context from its config file (`docker context use`)."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        found = json.loads((folder / "config.json").read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# who runs a container: "<host>:<pid>" of the basefactory process (see reap_orphans)
OWNER_LABEL = "org.basefactory.owner"
# Linux's limit on one argument of a command (MAX_ARG_STRLEN)
MAX_ARG = 131072


# the BuildKit secret that carries an https index's CA into builds (templates mount it)
INDEX_CA_SECRET = "index-ca"


class Docker:
    def __init__(self, client: ClientInfo, *, host: str | None = None, name: str = "local",
                 index_ca: Path | None = None) -> None:
        self.client = client
        self.host = host  # DOCKER_HOST of another engine; None: the default one
        self.name = name
        # the CA of an https index with a private certificate: every build gets it as the
        # BuildKit secret `index-ca` (the templates mount it where they install), every
        # in-container script as PIP_CERT; never a layer of an image
        self.index_ca = index_ca

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

    @functools.cached_property
    def api_socket(self) -> str | None:
        """The engine's unix socket, where the client would talk to it there (no other
        host, no context): a query through it costs a millisecond, a client process ~25 ms.
        None: ask through the client. Decided once per instance (it reads the client's
        config file), not on each of the many queries of a publish."""
        host = self.host or os.environ.get("DOCKER_HOST")
        if host:
            return host.removeprefix("unix://") if host.startswith("unix://") else None
        if os.environ.get("DOCKER_CONTEXT") or _current_context() not in (None, "default"):
            return None
        return "/var/run/docker.sock"

    def _api(self, path: str, timeout: float = 15, *, missing_ok: bool = False) -> Any:
        """GET on the engine's API through its socket (the JSON `docker ... inspect`
        prints is this API's). Raises OSError (and ValueError for a reply that is not
        JSON) where the engine does not answer there; with `missing_ok` a 404 is None."""
        sock_path = self.api_socket
        if sock_path is None:
            raise OSError("the engine is not on a unix socket")
        conn = _UnixHTTPConnection(sock_path, timeout)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status == 404 and missing_ok:
            return None
        if reply.status != 200:
            raise OSError(f"engine API {path} answered {reply.status}: {body[:200]!r}")
        return json.loads(body)

    def server_version(self) -> str | None:
        if self.api_socket is not None:
            try:
                version = self._api("/version").get("Version")
            except (OSError, ValueError, AttributeError):
                return None  # the client would not reach it there either
            return version if isinstance(version, str) and version else None
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
        entry = _auth_entry(folder, address)
        if entry.get("auth") == token:
            return
        # a registry whose realm gives refresh tokens: Docker keeps the identity token,
        # not the password; the login that made it is remembered by a digest of both
        made_by = _login_digest(entry.get("identitytoken"), password)
        marker = _logins_file(folder)
        if made_by is not None and _read_json(marker).get(f"{address}|{user}") == made_by:
            return
        self._run(["login", address, "-u", user, "--password-stdin"], stdin=password,
                  secrets=[password], echo=False,
                  hint=f"check the registry's credentials: is {address} this factory's"
                       " registry? (`basefactory status`)")
        made_by = _login_digest(_auth_entry(folder, address).get("identitytoken"), password)
        if made_by is not None:
            _write_json(marker, {**_read_json(marker), f"{address}|{user}": made_by})

    def pull(self, ref: str, *, attempts: int = 3, backoff_s: float = 2.0) -> bool:
        """Pull `ref`; False where the registry does not have it. Any other failure (a
        dropped link, a registry down, no credentials, a full disk) is tried again like
        `pull_required` and then raised: callers fall back to building on False, and a
        fallback for a failure that is not "not there" would hide its cause (and build
        on a host that may reach no apt mirror, or build a different base)."""
        try:
            self.pull_required(ref, attempts=attempts, backoff_s=backoff_s,
                               hint="this engine could not pull it: see docker's message;"
                               " is the registry answering (`basefactory status`)?")
        except ToolError as exc:
            if _MISSING.search(exc.message):
                return False
            raise
        return True

    def pull_required(self, ref: str, *, hint: str, attempts: int = 3,
                      backoff_s: float = 2.0) -> None:
        """Pull `ref`, or raise with docker's message. A pull is network I/O with no side
        effect, and a loaded link or registry drops one now and then (two build hosts
        pulling a 1.4 GB builder at once): it is tried `attempts` times. A reference the
        registry does not have is not tried again."""
        for attempt in range(1, attempts + 1):
            try:
                self._run(["pull", ref], echo=False, hint=hint)
                return
            except ToolError as exc:
                if attempt == attempts or _MISSING.search(exc.message):
                    raise
                log.detail(f"`docker pull {ref}` failed (try {attempt} of {attempts}):"
                           f" trying again in {backoff_s * attempt:g} s")
                time.sleep(backoff_s * attempt)

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
        if self.index_ca is not None:
            secrets = {INDEX_CA_SECRET: self.index_ca, **(secrets or {})}
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
        # on the no-op path of every publish, five times a platform: through the engine's
        # socket where it is there (~1 ms), else a direct `docker image inspect` (~25 ms)
        if self.api_socket is not None:
            try:
                found = self._api(f"/images/{urllib.parse.quote(ref, safe='/:@')}/json",
                                  missing_ok=True)
                return found if found is None or isinstance(found, dict) else None
            except (OSError, ValueError):
                pass  # the client below says what is wrong
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

    def find_image(self, labels: Mapping[str, str]) -> str | None:
        """The newest image on this engine carrying all of `labels`; None if none does."""
        args = ["images", "-q", "--no-trunc"]
        for key, value in sorted(labels.items()):
            args += ["--filter", f"label={key}={value}"]
        found = self._plain(args, timeout=60)
        ids = found.stdout.split() if found.returncode == 0 else []
        return ids[0] if ids else None

    def tag(self, source: str, target: str) -> None:
        self._run(["tag", source, target], echo=False)

    def push(self, ref: str, *, log_file: Path | None = None,
             on_line: Callable[[str], None] | None = None) -> None:
        self._run(["push", ref], log_file=log_file, on_line=on_line,
                  hint="is the registry up? `basefactory status` shows it")

    @contextlib.contextmanager
    def save(self, ref: str) -> Iterator[IO[bytes]]:
        """`docker save REF` as a stream to read once, front to back. Reading it to its end
        and leaving the block is success; a client that failed is a ToolError then."""
        argv = [self.client.path, "save", ref]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, **self.env})
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield proc.stdout
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            stderr = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            proc.wait()
        if proc.returncode != 0:
            raise ToolError(f"`docker save {ref}` failed with exit code {proc.returncode}:"
                            f" {stderr.strip()[-500:]}",
                            hint="is the Docker engine running? `basefactory up` starts one")

    def remove_image(self, ref: str) -> None:
        self._run(["image", "rm", "--force", ref], check=False, echo=False)

    def reap_orphans(self) -> list[str]:
        """Remove the containers a killed basefactory process on this host left running
        (`docker run --rm` removes a container when it ends, not when its client is
        killed): an orphaned fit or audit keeps burning CPU and holds files. Containers
        of live processes, and of other hosts sharing the engine, are left alone."""
        host = socket.gethostname()
        doomed = []
        for cid, label in self._owned_containers():
            who, _, pid = label.rpartition(":")
            if who == host and pid.isdigit() and not alive(int(pid)):
                doomed.append(cid)
        if doomed:
            self._run(["rm", "--force", *doomed], check=False, echo=False)
            log.detail(f"removed {len(doomed)} container(s) a killed run left behind")
        return doomed

    def _owned_containers(self) -> list[tuple[str, str]]:
        """(container id, owner label) of every container a basefactory process started."""
        if self.api_socket is not None:
            query = urllib.parse.quote(json.dumps({"label": [OWNER_LABEL]}))
            try:
                found = self._api(f"/containers/json?all=1&filters={query}")
                return [(c["Id"][:12], (c.get("Labels") or {}).get(OWNER_LABEL, ""))
                        for c in found]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # the client says why, or finds nothing
        out = self._plain(["ps", "-a", "--filter", f"label={OWNER_LABEL}",
                           "--format", f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}'])
        return [(cid, label) for cid, _, label in
                (line.partition(" ") for line in out.stdout.splitlines())]

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
        if self.index_ca is not None:
            files = {**files, "index-ca.pem": self.index_ca}
            env = {"PIP_CERT": f"{mount}/index-ca.pem", **(env or {})}
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
