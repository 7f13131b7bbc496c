"""A snapshot of what is published, read only from the sources of truth: the registry's
v2 API (repositories, tags, manifests, config labels) and devpi's JSON API (indexes,
projects, files, test records, fingerprints). No database that could drift.

Reads run concurrently; what never changes (a manifest's config, by digest) is cached for
the process's life, so a refresh after the first costs one request per repository and
one per project.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from packaging.utils import canonicalize_name

from basefactory.adapters.devpi_api import DevpiClient, ReleaseFile, simple_url
from basefactory.config.factory import Factory
from basefactory.daemons import registry_server
from basefactory.images import fit, referrers
from basefactory.images.definition import load_images, repositories
from basefactory.images.referrers import SBOM_TYPE
from basefactory.plumbing.errors import ConfigError
from basefactory.proofs import Kind, Proof
from basefactory.proofs.read import ProofReader
from basefactory.refs import (
    Labels,
    common_index,
    parse_immutable_tag,
    platform_index,
    user_index,
    zstd_ref,
    zstd_repository,
)
from basefactory.wheels.recipe import load_recipes


def image_url(image: str, platform: str) -> str:
    """The catalog's API page of one image on one platform: it shows the image's labels,
    and so the proofs they carry."""
    return f"/api/images/{image}/platforms/{platform}"


@dataclass(frozen=True)
class Tag:
    name: str
    date: str | None  # YYYY-MM-DD, from the immutable tag's name
    digest: str | None  # the manifest digest (filled for the current tag)


@dataclass(frozen=True)
class ImageCell:
    """One image on one platform: its moving tag and what it points at."""

    image: str
    platform: str
    ref: str  # REGISTRY/factory/<image>:<platform>
    current: str | None  # the immutable tag the moving tag points at
    date: str | None
    digest: str
    size: int  # compressed bytes, as pulled
    parent: str
    description: str
    wheels: dict[str, str]  # recipe wheels: distribution -> version
    manifest: list[dict[str, Any]]  # installed distributions with sizes
    proofs: list[Proof]  # from its labels: smoke test, ABI audit
    input_digest: str
    created: str
    tags: list[Tag] = field(default_factory=list)
    sbom: str | None = None  # the manifest digest of its SBOM artifact; None: none stored
    # recipe wheels: distribution -> the sha256 of the file built in (images built before
    # this label have none: their included wheels are then "not tested")
    wheel_files: dict[str, str] = field(default_factory=dict)
    # REGISTRY/factory-zstd/<image>:<platform>, when its moving tag is a copy of this
    # image (the same config); None: no zstd copy (or one of another build)
    zstd_ref: str | None = None


@dataclass(frozen=True)
class Wheel:
    index: str
    platform: str | None  # None: factory/common (pure Python, every platform)
    project: str
    version: str
    filename: str
    url: str
    sha256: str
    proofs: list[Proof]  # attached to the file in devpi: its test


@dataclass(frozen=True)
class Snapshot:
    taken_at: str
    registry: str
    index: str
    platforms: dict[str, dict[str, Any]]  # name -> fingerprint (or {} if not probed)
    images: dict[str, dict[str, ImageCell]]  # image -> platform -> cell
    wheels: list[Wheel]
    errors: list[str]
    index_user: str = "factory"  # the configured [index] user, whose indexes these are
    # "<image digest> <wheel sha256>" -> the inputs a fit proof of that pair must have to
    # count today (images.fit.fit_inputs: the rules, the image's and the recipe's
    # allowances, the recipe's test); None where the recipes or images did not load
    fit_inputs: dict[str, str] | None = field(default_factory=dict)

    def expected_fit(self, image_digest: str, wheel_sha256: str) -> str | None:
        return (self.fit_inputs or {}).get(f"{image_digest} {wheel_sha256}")

    @property
    def platform_names(self) -> list[str]:
        return list(self.platforms)

    def index_url(self, platform: str) -> str:
        """The platform's simple index, as pip and uv take it."""
        return simple_url(self.index, user_index(self.index_user, platform))


class Reader:
    def __init__(self, factory: Factory, *, workers: int = 16) -> None:
        self.factory = factory
        self.registry = registry_server.client(factory, timeout=10)
        index = factory.config.index
        read_from = (index.replica_url if factory.config.catalog.read_replica and
                     index.replica_url else index.base_url)
        self.devpi = DevpiClient(read_from, timeout=10, tls=index.tls)
        self.proofs = ProofReader(self.devpi)
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self._configs: dict[str, dict[str, Any]] = {}  # config digest -> config blob
        self._sboms: dict[str, str] = {}  # image digest -> its SBOM's (once found)
        # what devpi held at its last serial: unchanged serial, nothing to read again
        self._index_at: tuple[int, dict[str, dict[str, Any]], list[Wheel]] | None = None
        self._expected_at: tuple[Any, dict[str, str]] | None = None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.registry.close()
        self.devpi.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> Snapshot:
        """Raise if either source is down: the caller keeps the last good snapshot."""
        images_future = self.pool.submit(self.images)
        platforms, wheels = self._index()
        images = images_future.result()
        errors: list[str] = []
        try:
            expected: dict[str, str] | None = self.fit_expectations(images, wheels)
        except ConfigError as exc:
            expected = None
            errors.append(f"fit records are not checked against the recipes and images: {exc}")
        return Snapshot(
            taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
            registry=self.factory.config.registry.address,
            index=self.devpi.base_url,
            platforms=platforms,
            images=images,
            wheels=wheels,
            errors=errors,
            index_user=self.factory.config.index.user,
            fit_inputs=expected,
        )

    def fit_expectations(self, images: dict[str, dict[str, ImageCell]], wheels: list[Wheel]
                         ) -> dict[str, str]:
        """What a fit proof of each (image build, wheel file) pair must have as its inputs
        today: a record made under older rules, or before a recipe's test or an allowance
        changed, no longer proves the pair (as `publish` would refit it). Computed again
        only when the images, the wheels or a recipe or image file changed: a refresh runs
        every few seconds beside the requests."""
        key = (self._definitions_stat(),
               tuple(sorted((n, p, c.digest) for n, cells in images.items()
                            for p, c in cells.items())),
               tuple(sorted((w.platform or "", w.sha256) for w in wheels)))
        if self._expected_at is not None and self._expected_at[0] == key:
            return self._expected_at[1]
        expected = self._fit_expectations(images, wheels)
        self._expected_at = (key, expected)
        return expected

    def _definitions_stat(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for folder in (self.factory.recipes_dir, self.factory.images_dir):
            for path in sorted(folder.glob("**/*.toml")):
                st = path.stat()
                found.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(found)

    def _fit_expectations(self, images: dict[str, dict[str, ImageCell]], wheels: list[Wheel]
                          ) -> dict[str, str]:
        # only the pairs a fit record names: a catalog of 5,000 wheels and 1,000 image
        # builds has millions of pairs, and few records
        recorded = {(p.subject.image_digest, w.sha256): w for w in wheels for p in w.proofs
                    if p.kind == Kind.FIT and p.subject.image_digest}
        if not recorded:
            return {}
        recipes = load_recipes(self.factory.recipes_dir,
                               exclude=self.factory.config.wheels.exclude)
        definitions = load_images(self.factory.images_dir, recipes=set(recipes))
        by_dist = {r.distribution: r for r in recipes.values()}
        expected = {}
        for name, cells in images.items():
            allow = definitions[name].audit.allow if name in definitions else ()
            for platform, cell in cells.items():
                target = fit.Target(name, platform, cell.ref, cell.digest, cell.wheels, allow)
                for (digest, sha256), w in recorded.items():
                    if digest != cell.digest or w.platform not in (platform, None):
                        continue
                    candidate = fit.Candidate(
                        ReleaseFile(w.project, w.version, w.filename, w.url, sha256),
                        w.index, by_dist.get(canonicalize_name(w.project)))
                    expected[f"{cell.digest} {sha256}"] = fit.fit_inputs(target, candidate)
        return expected

    def _index(self) -> tuple[dict[str, dict[str, Any]], list[Wheel]]:
        """Fingerprints and wheels; read again only when devpi's serial moved (thousands of
        wheels are hundreds of requests, and a refresh runs every few seconds)."""
        serial = self.devpi.serial()
        if self._index_at is not None and self._index_at[0] == serial:
            return self._index_at[1], self._index_at[2]
        platforms_future = self.pool.submit(self.platforms)
        wheels = self.wheels()
        platforms = platforms_future.result()
        self._index_at = (serial, platforms, wheels)
        return platforms, wheels

    # --- devpi ---------------------------------------------------------------------------

    def platforms(self) -> dict[str, dict[str, Any]]:
        """Each configured platform's fingerprint as stored on its index ({}: not probed)."""
        names = list(self.factory.config.platforms)
        configs = self.pool.map(
            lambda n: self.devpi.index_config(platform_index(self.factory, n)), names)
        found: dict[str, dict[str, Any]] = {}
        for name, config in zip(names, configs, strict=True):
            data: dict[str, Any] = {}
            if config and config.get("custom_data"):
                try:
                    data = json.loads(config["custom_data"]).get("fingerprint") or {}
                except (json.JSONDecodeError, AttributeError):
                    data = {}
            found[name] = data
        return found

    def wheels(self) -> list[Wheel]:
        """One request per index where devpi has the factory's plugin; else one per project
        and one per test record (5,500 for 5,000 wheels: ~20 s of devpi's time)."""
        indexes = [(common_index(self.factory), None)] + [
            (platform_index(self.factory, p), p) for p in self.factory.config.platforms]
        bulk = self.pool.map(lambda i: self.devpi.index_wheels(i[0]), indexes)
        files: list[tuple[str, str | None, ReleaseFile]] = []
        jobs = []
        for (index, platform), answer in zip(indexes, bulk, strict=True):
            if answer is not None:
                self.proofs.seed_records(answer[1])
                files += [(index, platform, f) for f in answer[0]]
                continue
            config = self.devpi.index_config(index)
            for project in (config or {}).get("projects") or []:
                jobs.append((index, platform, project))
        results = self.pool.map(lambda j: self.devpi.release_files(j[0], j[2]), jobs)
        files += [(index, platform, f) for (index, platform, _), found in
                  zip(jobs, results, strict=True) for f in found]
        found = [(index, platform, f) for index, platform, f in files
                 if f.filename.endswith(".whl") and f.project.lower() != "torch"]
        proofs = self.pool.map(lambda x: self.proofs.wheel(x[2]), found)
        wheels = [Wheel(index, platform, f.project, f.version, f.filename, f.url, f.sha256, p)
                  for (index, platform, f), p in zip(found, proofs, strict=True)]
        return sorted(wheels, key=lambda w: (w.project.lower(), w.index, w.filename))

    # --- registry ------------------------------------------------------------------------

    def images(self) -> dict[str, dict[str, ImageCell]]:
        prefix = f"{self.factory.config.registry.namespace}/"
        repos = [r for r in repositories(self.factory, self.registry) if r.startswith(prefix)]
        tag_lists = dict(zip(repos, self.pool.map(self.registry.tags, repos), strict=True))
        jobs = [(repo, platform) for repo, tags in tag_lists.items()
                for platform in self.factory.config.platforms if platform in tags]
        cells = self.pool.map(lambda j: self._cell(j[0], j[1], tag_lists[j[0]]), jobs)
        found: dict[str, dict[str, ImageCell]] = {}
        for cell in cells:
            if cell is not None:
                found.setdefault(cell.image, {})[cell.platform] = cell
        return dict(sorted(found.items()))

    def _cell(self, repo: str, platform: str, tags: list[str]) -> ImageCell | None:
        manifest = self.registry.manifest(repo, platform)
        if manifest is None or manifest.config_digest is None:
            return None
        config = self._configs.get(manifest.config_digest)
        if config is None:
            config = self.registry.blob_json(repo, manifest.config_digest)
            self._configs[manifest.config_digest] = config
        labels: dict[str, str] = dict((config.get("config") or {}).get("Labels") or {})
        image = repo.split("/", 1)[1]
        immutable = sorted((t for t in tags if t.startswith(f"{platform}-")), reverse=True)
        # an image build names its tag in a label; a platform's base (pulled or
        # bootstrapped) has none: the tag whose manifest the moving tag is
        current = labels.get(Labels.OCI_VERSION) or next(
            (t for t in immutable if self.registry.digest(repo, t) == manifest.digest), None)
        tag_rows = []
        for tag in immutable:
            parsed = parse_immutable_tag(tag)
            tag_rows.append(Tag(tag, parsed.day if parsed else None,
                                manifest.digest if tag == current else None))
        parsed = parse_immutable_tag(current or "")
        created = labels.get(Labels.OCI_CREATED, "")
        return ImageCell(
            image=image, platform=platform,
            ref=f"{self.factory.config.registry.address}/{repo}:{platform}",
            current=current,
            date=created[:10] or (parsed.day if parsed else None),
            digest=manifest.digest, size=manifest.size,
            parent=labels.get(Labels.PARENT, ""),
            description=labels.get(Labels.OCI_DESCRIPTION, ""),
            wheels=_json(labels.get(Labels.WHEELS), {}),
            wheel_files=_json(labels.get(Labels.WHEEL_FILES), {}),
            manifest=_json(labels.get(Labels.MANIFEST), []),
            proofs=self.proofs.image(labels, image=image, platform=platform,
                                     source=image_url(image, platform)),
            input_digest=labels.get(Labels.INPUT_DIGEST, ""),
            created=created, tags=tag_rows, sbom=self._sbom(repo, manifest.digest),
            zstd_ref=self._zstd(image, platform, manifest.config_digest),
        )

    def _zstd(self, image: str, platform: str, config_digest: str) -> str | None:
        """The zstd copy's moving tag, if it is this very image (a copy whose config
        differs would be another build: not shown)."""
        if not self.factory.config.registry.zstd:
            return None
        copy = self.registry.manifest(zstd_repository(self.factory, image), platform)
        if copy is None or copy.config_digest != config_digest:
            return None
        return zstd_ref(self.factory, image, platform)

    def _sbom(self, repo: str, digest: str) -> str | None:
        found = self._sboms.get(digest)
        if found is None:
            found = referrers.find(self.registry, repo, digest, artifact_type=SBOM_TYPE)
            if found is not None:
                self._sboms[digest] = found
        return found

    def sbom_document(self, repo: str, sbom_digest: str) -> bytes:
        artifact = self.registry.manifest(repo, sbom_digest)
        if artifact is None or not artifact.body.get("layers"):
            raise LookupError(f"{repo}@{sbom_digest} is gone from the registry")
        return self.registry.blob(repo, artifact.body["layers"][0]["digest"])


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default
