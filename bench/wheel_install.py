"""Issue 4: installing a compiled recipe wheel from the platform's index, against building
the same package from its sdist in the same base (the naive way), side by side."""

from __future__ import annotations

from basefactory.refs import base_ref, builder_ref, platform_index
from bench.common import PLATFORM, Figure, Report, run, session, timed

TARGET = 20.0


def bench(report: Report) -> None:
    s = session()
    docker = s.docker.client.path
    index = s.devpi.simple_url(platform_index(s.factory, PLATFORM))
    mirror = s.devpi.simple_url(s.factory.config.index.mirror)
    base = base_ref(s.factory, PLATFORM)
    # the naive way needs compilers: the same base plus build-essential (the factory's
    # builder image, made from the base); both runs start from a fresh container, no cache
    builder = builder_ref(PLATFORM)
    for package, naive_args in (
        ("torchsort", "pip install --no-cache-dir setuptools wheel && pip install --no-cache-dir"
                      " --no-build-isolation --no-binary torchsort torchsort==0.1.10"),
        ("monotonic-alignment-search", "pip install --no-cache-dir --no-binary"
         " monotonic-alignment-search monotonic-alignment-search==0.2.1"),
    ):
        ours = timed(lambda package=package: run([  # type: ignore[misc]
            docker, "run", "--rm", "--network", "host", base, "sh", "-c",
            f"pip install --no-cache-dir --index-url {index} {package}"]))
        naive = timed(lambda naive_args=naive_args: run([  # type: ignore[misc]
            docker, "run", "--rm", "--network", "host", "-e", f"PIP_INDEX_URL={mirror}",
            builder, "sh", "-c", naive_args]))
        ratio = naive / ours
        report.add(Figure(f"install {package} (wheel from factory/{PLATFORM}) vs build from sdist",
                          ours, naive, "s", f">= {TARGET:.0f}x", ratio >= TARGET,
                          "both in a fresh container of the platform's base (the naive one with"
                          " compilers), no pip cache, dependencies from the same devpi"))
