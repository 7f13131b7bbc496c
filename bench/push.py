"""Issue 27: pushes. The factory's parallel push (`[registry] push = "pigz"`,
images/upload.py: `docker save`, pigz on every core for the new layers, the rest mounted)
beside `docker push` (dockerd gzips each layer on one thread), in one run, on images built
fresh for each side so that neither finds its new layers in the registry:

- big: the demo platform's slim image plus a new 1.4 GB layer (tts-deps's site-packages),
  the case of a base image whose dependencies changed;
- small: tts-deps (2 GB) plus a new layer of ~30 MB, the case of an image whose top
  changed a little.
"""

from __future__ import annotations

import time
import uuid

from basefactory.images import upload
from basefactory.refs import image_ref, repository
from bench.common import PLATFORM, WORK, Figure, Report, run, session

HERE = WORK / "push"
CASES = {
    "big": ("slim", "COPY --from={tts} /opt/venv/lib/python3.11/site-packages /big-{unique}",
            "a new image (slim + a new 1.4 GB layer)"),
    "small": ("tts-deps",
              "COPY --from={tts} /opt/venv/lib/python3.11/site-packages/numpy /small-{unique}",
              "tts-deps (2 GB) + a new layer of ~30 MB"),
}


def fresh_image(docker: str, parent: str, body: str, tag: str) -> None:
    """FROM parent, the case's layer (under a path of its own: a tar no registry or
    engine has seen), a stamp."""
    HERE.mkdir(parents=True, exist_ok=True)
    unique = uuid.uuid4().hex
    (HERE / "Dockerfile").write_text(
        f"FROM {parent}\n{body.format(unique=unique)}\nRUN echo {unique} > /stamp\n")
    run([docker, "build", "--network", "host", "-q", "-t", tag, str(HERE)])


def bench(report: Report) -> None:
    s = session()
    docker = s.docker.client.path
    factory = s.factory
    refs = {name: image_ref(factory, name, PLATFORM) for name in ("slim", "tts-deps")}
    for ref in refs.values():
        if s.docker.image_id(ref) is None:
            run([docker, "pull", ref])
    for case, (parent, body, title) in CASES.items():
        body = body.replace("{tts}", refs["tts-deps"])
        sizes: dict[str, int] = {}
        # naive: `docker push`
        naive_repo = f"bench-push-{case}-docker"
        naive_tag = uuid.uuid4().hex[:8]
        naive_ref = image_ref(factory, naive_repo, naive_tag)
        fresh_image(docker, refs[parent], body, naive_ref)
        started = time.perf_counter()
        run([docker, "push", naive_ref])
        naive = time.perf_counter() - started
        pushed = s.registry.manifest(repository(factory, naive_repo), naive_tag)
        assert pushed is not None
        sizes["docker"] = sum(layer["size"] for layer in pushed.body["layers"])
        # ours: the parent's layers are known to it, as a publish's are
        ours_repo = f"bench-push-{case}-pigz"
        ours_tag = uuid.uuid4().hex[:8]
        local = image_ref(factory, ours_repo, ours_tag)
        fresh_image(docker, refs[parent], body, local)
        started = time.perf_counter()
        result = upload.push(
            s.docker, s.registry, local, repository(factory, ours_repo), ours_tag,
            reuse=upload.known_layers(s.registry, [(repository(factory, parent), PLATFORM)]),
            scratch=factory.state_dir / "build" / "push")
        ours = time.perf_counter() - started
        mine = s.registry.manifest(repository(factory, ours_repo), ours_tag)
        assert mine is not None and mine.config_digest == s.docker.image_id(local)
        sizes["pigz"] = sum(layer["size"] for layer in mine.body["layers"])
        for tag in (naive_ref, local):
            run([docker, "image", "rm", "--force", tag])
        # the big case is what "pigz" is for; the small one is where it loses, shown so
        # that the choice between the two is made on numbers
        target, met = ("faster than `docker push`", ours < naive) if case == "big" else \
            ("— (the case `docker push` wins)", True)
        report.add(Figure(
            f"push of {title}: `[registry] push = \"pigz\"` vs `docker push`", ours, naive,
            "s", target, met,
            f"same registry, the parent's layers already there (mounted by both); pigz:"
            f" {result.summary()}, level 3, 2 cores; image {sizes['pigz'] / 1e6:.1f} MB gzip"
            f" vs `docker push`'s {sizes['docker'] / 1e6:.1f} MB (level 6, one thread per"
            " layer). The pigz side includes `docker save`, which Docker 20.10 starts"
            " streaming only after exporting the whole image, and the copy of each layer to"
            " scratch until its diff_id is known: it reads the whole image, new or not"))
