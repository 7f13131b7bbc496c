"""Issue 27: pushes. The factory's push (images/upload.py: docker save, pigz on every core
for the new layers, the rest mounted) beside `docker push` (dockerd gzips each layer on
one thread), in one run, on the same new image: the demo platform's slim image plus one
new layer of 1.4 GB (tts-deps's site-packages) and a tiny one, built fresh for each side
so that neither finds its layers already in the registry.
"""

from __future__ import annotations

import time
import uuid

from basefactory.images import upload
from basefactory.refs import image_ref, repository
from bench.common import PLATFORM, WORK, Figure, Report, run, session

HERE = WORK / "push"


def fresh_image(docker: str, slim: str, tts: str, tag: str) -> None:
    """FROM slim, a new 1.4 GB layer, a stamp: its layers new to every registry."""
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "Dockerfile").write_text(
        f"FROM {slim}\n"
        f"COPY --from={tts} /opt/venv/lib/python3.11/site-packages /big\n"
        f"RUN echo {uuid.uuid4().hex} > /stamp\n")
    run([docker, "build", "--network", "host", "-q", "-t", tag, str(HERE)])


def bench(report: Report) -> None:
    s = session()
    docker = s.docker.client.path
    factory = s.factory
    slim = image_ref(factory, "slim", PLATFORM)
    tts = image_ref(factory, "tts-deps", PLATFORM)
    for ref in (slim, tts):
        if s.docker.image_id(ref) is None:
            run([docker, "pull", ref])
    slim_repo = repository(factory, "slim")
    sizes: dict[str, int] = {}

    # naive: `docker push`
    naive_tag = image_ref(factory, "bench-push-docker", uuid.uuid4().hex[:8])
    fresh_image(docker, slim, tts, naive_tag)
    started = time.perf_counter()
    run([docker, "push", naive_tag])
    naive = time.perf_counter() - started
    pushed = s.registry.manifest(repository(factory, "bench-push-docker"),
                                 naive_tag.rsplit(":", 1)[1])
    assert pushed is not None
    sizes["docker"] = sum(layer["size"] for layer in pushed.body["layers"])

    # ours: the factory's push, the slim image's layers known to it as a parent's are
    ours_tag = uuid.uuid4().hex[:8]
    local = image_ref(factory, "bench-push-factory", ours_tag)
    fresh_image(docker, slim, tts, local)
    started = time.perf_counter()
    result = upload.push(s.docker, s.registry, local, repository(factory, "bench-push-factory"),
                         ours_tag, reuse=upload.known_layers(s.registry, [(slim_repo, PLATFORM)]),
                         scratch=factory.state_dir / "build" / "push")
    ours = time.perf_counter() - started
    mine = s.registry.manifest(repository(factory, "bench-push-factory"), ours_tag)
    assert mine is not None and mine.config_digest == s.docker.image_id(local)
    sizes["factory"] = sum(layer["size"] for layer in mine.body["layers"])
    for tag in (naive_tag, local):
        run([docker, "image", "rm", "--force", tag])
    report.add(Figure(
        "push of a new image (slim + a new 1.4 GB layer): the factory's push vs `docker push`",
        ours, naive, "s", "faster than `docker push`", ours < naive,
        f"both to the same registry, slim's layers already there (mounted by both); ours:"
        f" {result.summary()}, pigz level 3 on 2 cores; image {sizes['factory'] / 1e6:.1f} MB"
        f" gzip vs `docker push`'s {sizes['docker'] / 1e6:.1f} MB (level 6, one thread per"
        " layer). Ours includes `docker save`, which Docker 20.10 only starts streaming after"
        " it has exported the whole image (~9 s here), and the copy of each layer to scratch"
        " until its diff_id is known"))
