"""The command line: parse arguments, call one function, print its result. Nothing else."""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from basefactory import __version__
from basefactory.adapters.devpi_api import DevpiClient
from basefactory.config.factory import Factory, config_path, load_factory
from basefactory.index.layout import client as _index_client
from basefactory.plumbing import log, output
from basefactory.plumbing.errors import BasefactoryError, TestFailed
from basefactory.refs import platform_index
from basefactory.session import Session

Handler = Callable[[argparse.Namespace], int]


def _factory(args: argparse.Namespace) -> Factory:
    return load_factory(config_path(args.config))


# --- handlers ---------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from basefactory.checks import check_all

    summary = check_all(_factory(args))
    if args.json:
        output.emit_json(summary)
    else:
        for line in summary["checked"]:
            log.info(f"✓ {line}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from basefactory import house

    factory = _factory(args)
    statuses = house.up(factory)
    _print_status(statuses, args.json)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from basefactory import house

    stopped = house.down(_factory(args))
    if args.json:
        output.emit_json({"stopped": stopped})
    else:
        log.info(f"stopped: {', '.join(stopped)}" if stopped else "nothing that `up` started runs")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from basefactory import house

    statuses = house.status(_factory(args))
    _print_status(statuses, args.json)
    return 0 if all(s.state != "stopped" for s in statuses) else 1


def cmd_platforms_build(args: argparse.Namespace) -> int:
    from basefactory.platforms.publish import ensure_platform
    from basefactory.plumbing.writer import one_writer

    factory = _factory(args)
    with one_writer(factory.state_dir, "platforms build", wait=args.wait), Session(factory) as session:
        results = [ensure_platform(session, name) for name in session.factory.platforms(args.names)]
    rows = [{"platform": r.base.platform, "base": r.base.ref, "built": r.base.built,
             "input_digest": r.base.input_digest, "local_label": r.fingerprint.local_label,
             "torch": r.fingerprint.torch, "cuda": r.fingerprint.cuda} for r in results]
    _print_rows("platforms", rows, args.json)
    return 0


def cmd_platforms_probe(args: argparse.Namespace) -> int:
    from basefactory.platforms.publish import probe_platform

    with Session(_factory(args)) as session:
        fingerprint = probe_platform(session, args.name)
    if args.json:
        output.emit_json(fingerprint.model_dump())
    else:
        data = fingerprint.model_dump()
        dists = data.pop("distributions")
        output.table(f"platform {args.name}", ["field", "value"],
                     [*data.items(), ("distributions", f"{len(dists)} (the base's constraints)")])
    return 0


def cmd_platforms_ls(args: argparse.Namespace) -> int:
    from basefactory.platforms import store

    factory = _factory(args)
    rows = []
    with Session(factory) as session:
        for name, platform in factory.config.platforms.items():
            fp = store.load(factory, layout_client(session), name)
            rows.append({
                "platform": name, "enabled": platform.enabled,
                "source": platform.image or f"bootstrap {platform.bootstrap.torch}"  # type: ignore[union-attr]
                if platform.image or platform.bootstrap else "",
                "probed": fp is not None, "python": fp.python if fp else None,
                "torch": fp.torch if fp else None, "cuda": fp.cuda if fp else None,
                "cxx11_abi": fp.cxx11_abi if fp else None, "glibc": fp.glibc if fp else None,
                "arch": fp.arch if fp else None, "label": fp.local_label if fp else None,
                "distributions": len(fp.distributions) if fp else None,
            })
    _print_rows("platforms", rows, args.json)
    return 0


def layout_client(session: Session) -> DevpiClient:
    return _index_client(session.factory)


def cmd_wheels_build(args: argparse.Namespace) -> int:
    from basefactory.plumbing.writer import one_writer
    from basefactory.wheels.publish import build_all

    factory = _factory(args)
    with one_writer(factory.state_dir, "wheels build", wait=args.wait), Session(factory) as session:
        results = build_all(session, args.recipes or None, args.platform or None,
                            retest=args.retest)
    _print_rows("wheels", [r.as_dict() for r in results], args.json)
    return 0


def cmd_wheels_ls(args: argparse.Namespace) -> int:
    from basefactory.catalog.listing import list_wheels
    from basefactory.catalog.snapshot import Reader

    with Reader(_factory(args)) as reader:
        rows = list_wheels(reader)
    _print_rows("published wheels", rows, args.json)
    return 0


def cmd_images_build(args: argparse.Namespace) -> int:
    from basefactory.images.publish import build_all
    from basefactory.plumbing.writer import one_writer

    factory = _factory(args)
    with one_writer(factory.state_dir, "images build", wait=args.wait), Session(factory) as session:
        results = build_all(session, args.images or None, args.platform or None,
                            upgrade=args.upgrade)
    _print_rows("images", [r.as_dict() for r in results], args.json)
    return 0


def cmd_images_ls(args: argparse.Namespace) -> int:
    from basefactory.catalog.listing import list_images
    from basefactory.catalog.snapshot import Reader

    with Reader(_factory(args)) as reader:
        rows = list_images(reader)
    _print_rows("published images", rows, args.json)
    return 0


def cmd_images_audit(args: argparse.Namespace) -> int:
    from basefactory.images.audit import audit_target

    with Session(_factory(args)) as session:
        found = audit_target(session, args.image)
    rows = [{"image": ref, "modules": r.modules, "failures": len(r.failures),
             "host_provided": sorted({h["library"] for h in r.host_provided}),
             "passed": r.passed} for ref, r in found]
    if args.json:
        output.emit_json([{"image": ref, **r.evidence(), "passed": r.passed} for ref, r in found])
    else:
        _print_rows("ABI audit", rows, False)
        for ref, r in found:
            for line in r.lines():
                log.error(f"{ref}: {line}")
    failed = [ref for ref, r in found if not r.passed]
    if failed and not args.json:
        log.error(f"{len(failed)} image(s) have extension modules that do not load;"
                  " build them here with a recipe, or pin versions built for their torch")
    return TestFailed.exit_code if failed else 0


def cmd_images_sbom(args: argparse.Namespace) -> int:
    from basefactory.images.sbom import read, summary

    with Session(_factory(args)) as session:
        tag, text = read(session, args.image)
    if args.output is None:
        print(text)  # the document itself is the machine-readable answer
        return 0
    Path(args.output).write_text(text)
    counts = summary(text)
    if args.json:
        output.emit_json({"tag": tag, "path": args.output, **counts})
    else:
        log.info(f"{args.image.partition(':')[0]}:{tag}: CycloneDX {counts['spec_version']},"
                 f" {counts['components']} components ({counts['python']} Python,"
                 f" {counts['debian']} Debian, {counts['factory_wheels']} factory wheels)"
                 f" -> {args.output}")
    return 0


def _count(text: str) -> int:
    """A command-line count: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def cmd_prune(args: argparse.Namespace) -> int:
    from basefactory.images.retention import prune
    from basefactory.plumbing.writer import one_writer

    factory = _factory(args)
    # `--keep 0` keeps only what the moving tags point at; it is not "unset"
    keep = factory.config.retention.keep if args.keep is None else args.keep
    days = factory.config.retention.keep_days if args.keep_days is None else args.keep_days
    # only deleting takes the publish lock: a dry run reads, and may run beside a publish
    locked = one_writer(factory.state_dir, "prune", wait=args.wait) if args.yes else \
        contextlib.nullcontext()
    with locked, Session(factory) as session:
        summary = prune(factory, session.registry, keep=keep, keep_days=days, act=args.yes,
                        images=args.images or None)
    if args.json:
        output.emit_json(summary)
        return 0
    output.table("prune: immutable tags", ["image", "tag", "created", "image size", "", "why"],
                 [[r["repository"], r["tag"], r["created"][:19], output.human_size(r["size"]),
                   "keep" if keep_ else ("deleted" if args.yes else "would delete"), r["why"]]
                  for keep_, rows in ((True, summary["kept"]), (False, summary["deleted"]))
                  for r in rows])
    if not summary["deleted"]:
        log.info("prune: nothing to delete")
    elif not args.yes:
        log.info(f"prune: dry run, {len(summary['deleted'])} tag(s) would be deleted;"
                 " run with --yes to delete them")
    else:
        freed = summary["bytes_freed"]
        log.info(f"prune: {summary['deleted_manifests']} manifest(s) deleted"
                 + (f", registry garbage-collected: {output.human_size(freed)} freed"
                    if freed is not None else "; run your registry's garbage collection"))
    return 0


def cmd_outdated(args: argparse.Namespace) -> int:
    from basefactory.images.outdated import outdated

    with Session(_factory(args)) as session:
        rows = outdated(session, args.images or None, args.platform)
    if args.json:
        output.emit_json(rows)
        return 0
    output.table("newer versions on the index", ["", "name", "platform", "package", "locked",
                                                 "--upgrade takes", "newest", "held back by"],
                 [[r["kind"], r["name"], r["platform"], r["package"], r["current"],
                   r["upgrade"] or "", r["newest"], r["held_back"] or "—"] for r in rows])
    if not rows:
        log.info("every lock and recipe pins the newest release the index offers")
    return 0


def cmd_df(args: argparse.Namespace) -> int:
    from basefactory.images.retention import usage

    factory = _factory(args)
    with Session(factory) as session:
        found = usage(factory, session.registry)
    if args.json:
        output.emit_json(found)
        return 0
    output.table("registry: per image and platform (compressed layers, each counted once)",
                 ["image", "platform", "tags", "size"],
                 [[r["image"], r["platform"], r["tags"], output.human_size(r["bytes"])]
                  for r in found["images"]])
    if found["indexes"]:
        output.table("indexes (on the embedded devpi's disk)", ["index", "size"],
                     [[r["index"], output.human_size(r["bytes"])] for r in found["indexes"]])
    output.table("on disk", ["folder", "size"],
                 [[f"{factory.state_dir / k}", output.human_size(v)]
                  for k, v in found["disk"].items()])
    return 0


def cmd_images_diff(args: argparse.Namespace) -> int:
    from basefactory.images.diff import diff, side_reference
    from basefactory.refs import Labels, platform_of_tag, repository

    factory = _factory(args)
    name = side_reference(factory, args.image, what="IMAGE").name
    tag_a = side_reference(factory, args.tag_a, image=name).reference
    tag_b = side_reference(factory, args.tag_b, image=name).reference
    assert tag_a is not None and tag_b is not None
    with Session(factory) as session:
        repo = repository(factory, name)
        platform = (session.registry.labels(repo, tag_a).get(Labels.PLATFORM)
                    if tag_a.startswith("sha256:") else None) or platform_of_tag(factory, tag_a)
        found = diff(session.registry, repo, name, platform, tag_a, tag_b)
    if args.json:
        output.emit_json(found)
        return 0
    a, b = found["a"], found["b"]
    output.table(f"{name}: {a['tag']} -> {b['tag']}", ["", "a", "b"], [
        ["digest", a["digest"][:19], b["digest"][:19]],
        ["compressed size", output.human_size(a["compressed_size"]),
         output.human_size(b["compressed_size"])],
        ["ABI audit", a["abi_audit"], b["abi_audit"]]])
    rows = ([["added", r["name"], "", r["version"], output.human_size(r["size"])]
             for r in found["added"]] +
            [["removed", r["name"], r["version"], "", output.human_size(-r["size"])]
             for r in found["removed"]] +
            [["changed", r["name"], r["from"], r["to"], output.human_size(r["size_delta"])]
             for r in found["changed"]])
    output.table("packages", ["", "name", "a", "b", "size"], rows)
    log.info(f"compressed size delta: {output.human_size(found['compressed_size_delta'])}")
    return 0


def _steps_table(title: str, steps: list[Any]) -> None:
    output.table(title, ["step", "name", "platform", "result", "why", "duration", "size",
                         "tag / file"],
                 [[s.kind, s.name, s.platform, s.result, s.reason, f"{s.duration_s:.1f}s",
                   output.human_size(s.size) if s.size else "", s.tag] for s in steps])


def cmd_images_fit(args: argparse.Namespace) -> int:
    from basefactory import house
    from basefactory.pipeline import fit_published
    from basefactory.plumbing.progress import Progress
    from basefactory.plumbing.writer import one_writer

    factory = _factory(args)
    with one_writer(factory.state_dir, "images fit", wait=args.wait):
        house.ensure(factory)
        live = log.is_tty() and not args.json and not args.quiet
        with Session(factory) as session, Progress(live=live) as progress:
            steps = fit_published(session, platforms=args.platform or None,
                                  image_names=args.images or None, jobs=args.jobs,
                                  progress=progress)
    if args.json:
        output.emit_json([s.as_dict() for s in steps])
    else:
        _steps_table("fit tests", steps)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    import time

    from basefactory import house
    from basefactory.pipeline import Interrupted, publish, summary_line
    from basefactory.plumbing.progress import Progress
    from basefactory.plumbing.writer import one_writer

    factory = _factory(args)
    started = time.monotonic()
    interrupted = False
    runs: dict[str, float] = {}
    if args.dry_run:
        with Session(factory) as session:
            steps = publish(session, platforms=args.platform or None, only=args.only or None,
                            dry_run=True, fits=not args.no_fits)
    elif args.executor:
        from basefactory.schedule.executor import publish_on_dask, raise_failures

        # the workers' `run`s hold the lock shared, each step's own exclusively
        with one_writer(factory.state_dir, "publish --executor", wait=args.wait,
                          shared=True):
            house.ensure(factory)
            with Session(factory) as session:
                outcome = publish_on_dask(session, args.executor,
                                          platforms=args.platform or None,
                                          only=args.only or None, fits=not args.no_fits)
        steps, runs = outcome.steps, outcome.runs
        if outcome.failed:
            _steps_table("published", steps)
            raise_failures(outcome)
    else:
        with one_writer(factory.state_dir, "publish", wait=args.wait):
            house.ensure(factory)
            live = log.is_tty() and not args.json and not args.quiet
            with Session(factory) as session, Progress(live=live) as progress:
                try:
                    steps = publish(session, platforms=args.platform or None,
                                    only=args.only or None, jobs=args.jobs, progress=progress,
                                    fits=not args.no_fits)
                except Interrupted as stop:
                    steps, interrupted = stop.steps, True
    elapsed = time.monotonic() - started
    if args.json:
        output.emit_json({"steps": [s.as_dict() for s in steps], "elapsed_s": round(elapsed, 2),
                          "dry_run": args.dry_run, "interrupted": interrupted,
                          "logs": str(factory.logs_dir),
                          **({"worker_runs_s": runs} if args.executor else {})})
    else:
        _steps_table("plan" if args.dry_run else "published", steps)
        log.info(summary_line(steps, elapsed) + f"; logs in {factory.logs_dir}")
    if interrupted:
        log.error("interrupted: the steps above finished and are published; nothing half-done"
                  " was. Run publish again to complete the rest.")
        return 130
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from basefactory.schedule import dag, export

    factory = _factory(args)
    with Session(factory) as session:
        nodes = dag.build(session, platforms=args.platform or None, only=args.only or None)
    config = str(factory.path) if args.config else None
    if args.format in ("gitlab-ci", "github-actions"):
        import yaml

        document = (export.gitlab_ci(nodes, config=config) if args.format == "gitlab-ci"
                    else export.github_actions(nodes, config=config))
        print(yaml.safe_dump(document, sort_keys=False, width=100), end="")
        return 0
    if args.json or args.format == "json":
        output.emit_json({"steps": [n.as_dict() for n in nodes]})
        return 0
    output.table("steps", ["id", "current", "needs", "why"],
                 [[n.id, "yes" if n.current else "no", ", ".join(n.needs), n.reason]
                  for n in nodes])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from basefactory import house
    from basefactory.plumbing.writer import step_writer
    from basefactory.schedule.run import run_step

    factory = _factory(args)
    with step_writer(factory.state_dir, args.step, wait=args.wait):
        house.ensure(factory)
        with Session(factory) as session:
            steps = run_step(session, args.step)
    if args.json:
        output.emit_json({"step": args.step, "results": [s.as_dict() for s in steps]})
    else:
        _steps_table(args.step, steps)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from basefactory.catalog.listing import list_images, list_platforms, list_wheels
    from basefactory.catalog.snapshot import Reader

    with Reader(_factory(args)) as reader:
        platforms = list_platforms(reader)
        images, wheels = list_images(reader), list_wheels(reader)
    if args.json:
        output.emit_json({"platforms": platforms, "images": images, "wheels": wheels})
        return 0
    _print_rows("platforms", platforms, False)
    _print_rows("images", images, False)
    _print_rows("wheels", wheels, False)
    return 0


def cmd_catalog_serve(args: argparse.Namespace) -> int:
    from basefactory.catalog.server import serve

    factory = _factory(args)
    serve(factory, args.host or factory.config.catalog.host,
          args.port or factory.config.catalog.port)
    return 0


def cmd_catalog_start(args: argparse.Namespace) -> int:
    from basefactory.catalog.process import start

    url = start(_factory(args))
    if args.json:
        output.emit_json({"url": url})
    else:
        log.info(f"catalog: {url}/")
    return 0


def cmd_catalog_stop(args: argparse.Namespace) -> int:
    from basefactory.catalog.process import stop

    stopped = stop(_factory(args))
    log.info("catalog stopped" if stopped else "no catalog that `catalog start` started runs")
    return 0


def cmd_index_import(args: argparse.Namespace) -> int:
    from basefactory.index.importer import import_wheels

    with Session(_factory(args)) as session:
        index = args.index if "/" in args.index else platform_index(session.factory, args.index)
        done = import_wheels(session.devpi, index, Path(args.directory), args.only or None)
    _print_rows(f"imported into {index}", [{"file": f, "state": s} for f, s in done], args.json)
    return 0


def _print_rows(title: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        output.emit_json(rows)
    elif rows:
        output.table(title, list(rows[0]), [list(r.values()) for r in rows])
    else:
        log.info(f"{title}: none")


def _print_status(statuses: Sequence[Any], as_json: bool) -> None:
    if as_json:
        output.emit_json([s.as_dict() for s in statuses])
        return
    output.table(
        "basefactory services",
        ["service", "state", "address", "started by up", "pid", "detail"],
        [[s.name, s.state, s.address, "yes" if s.managed else "no", s.pid, s.detail]
         for s in statuses],
    )


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the subcommand. SUPPRESS keeps a
    # subcommand's parser from resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="PATH",
                        help="factory.toml to use (default: $BASEFACTORY_CONFIG or ./factory.toml)")
    common.add_argument("--json", action="store_true", help="print a JSON result for scripts")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", help="print only results")

    parser = argparse.ArgumentParser(
        prog="basefactory", parents=[common],
        description="Compile heavy wheels against a platform, publish them to a devpi index per"
        " platform, and build layered base images on top.",
    )
    parser.add_argument("--version", action="version", version=f"basefactory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_,
                                                       description=help_)
        p.set_defaults(handler=handler)
        return p

    config = sub.add_parser("config", help="validate the factory's configuration")
    config_sub = config.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    add("check", cmd_config_check, "validate factory.toml, recipes/ and images/", config_sub)

    platforms = sub.add_parser("platforms", help="make, probe and list platforms")
    platforms_sub = platforms.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    p = add("build", cmd_platforms_build, "make (or reuse) each platform's base, probe and push it",
            platforms_sub)
    p.add_argument("names", nargs="*", metavar="NAME", help="platforms (default: every enabled one)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")
    p = add("probe", cmd_platforms_probe, "fingerprint a platform's base", platforms_sub)
    p.add_argument("name", metavar="NAME")
    add("ls", cmd_platforms_ls, "list platforms and their fingerprints", platforms_sub)

    wheels = sub.add_parser("wheels", help="build, test and publish recipe wheels")
    wheels_sub = wheels.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    p = add("build", cmd_wheels_build, "build, test and upload recipe wheels for each platform",
            wheels_sub)
    p.add_argument("recipes", nargs="*", metavar="RECIPE", help="recipes (default: all)")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    p.add_argument("--retest", action="store_true",
                   help="test each published wheel again and attach a fresh record (no rebuild);"
                        " a changed test command does this by itself")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")
    add("ls", cmd_wheels_ls, "list the wheels published to the factory's indexes", wheels_sub)

    images = sub.add_parser("images", help="lock, build, test and push the layered images")
    images_sub = images.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    p = add("build", cmd_images_build, "lock, build, smoke-test and push images, parents first",
            images_sub)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images (default: all); their ancestors are ensured too")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    p.add_argument("--upgrade", action="store_true",
                   help="re-resolve the locks even when their inputs are unchanged")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")
    add("ls", cmd_images_ls, "list the images published to the registry", images_sub)
    p = add("audit", cmd_images_audit, "load every extension module of an image against its own"
            " libraries (ABI audit); exit 6 when one does not load", images_sub)
    p.add_argument("image", metavar="IMAGE[:TAG]",
                   help="an image of this factory (every platform without a tag), or any full"
                   " reference HOST/PATH:TAG")
    p = add("sbom", cmd_images_sbom, "the CycloneDX SBOM stored beside an image in the"
            " registry (stdout, or a file with -o)", images_sub)
    p.add_argument("image", metavar="IMAGE[:TAG]",
                   help="an image of this factory (NAME, NAME:TAG, NAME@sha256:…, or the full"
                   " reference the catalog shows); the tag may be a platform (its moving tag)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the document here")
    p = add("diff", cmd_images_diff, "packages added, removed and changed between two tags of"
            " an image, its size delta and both ABI audits' verdicts", images_sub)
    p.add_argument("image", metavar="IMAGE", help="NAME, or a full reference of it")
    p.add_argument("tag_a", metavar="TAG_A", help="a tag, a sha256: digest or a full reference")
    p.add_argument("tag_b", metavar="TAG_B")
    p = add("fit", cmd_images_fit, "install each wheel of the platform's index into each"
            " published image, as users would, and record whether it fits (pairs already"
            " proven are not tested again)", images_sub)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images (default: all, and the platforms' base and slim)")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N",
                   help="fit tests to run at once (default 2)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")

    catalog = sub.add_parser("catalog", help="the catalog web page and JSON API")
    catalog_sub = catalog.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    p = add("serve", cmd_catalog_serve, "serve the catalog in the foreground", catalog_sub)
    p.add_argument("--host", help="default: [catalog] host")
    p.add_argument("--port", type=int, help="default: [catalog] port")
    add("start", cmd_catalog_start, "start the catalog in the background and print its URL",
        catalog_sub)
    add("stop", cmd_catalog_stop, "stop the catalog that `catalog start` started", catalog_sub)

    index = sub.add_parser("index", help="work with the devpi index")
    index_sub = index.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    p = add("import", cmd_index_import, "upload a local wheelhouse into an index (air-gapped sites)",
            index_sub)
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--index", required=True, help="index name: PLATFORM, common, or USER/NAME")
    p.add_argument("--only", action="append", metavar="REQ",
                   help="import only what this requirement needs (repeatable)")

    p = add("publish", cmd_publish,
            "platforms, then wheels, then images: build, test and publish what is not current")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this recipe or image (repeatable; an image brings its ancestors)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan: what would be built and why")
    p.add_argument("--no-fits", action="store_true",
                   help="skip the fit tests of wheels in images (the catalog then says"
                   " \"not tested\" for the pairs of images built by this run)")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N",
                   help="independent steps to run at once, over all builders (default 2)")
    p.add_argument("--executor", metavar="dask://HOST:PORT",
                   help="run the steps on a Dask distributed scheduler's workers (each with"
                   " its own Docker engine) instead of this host's builders")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")

    p = add("plan", cmd_plan, "the steps of a publish as a DAG: ids, dependencies, inputs,"
            " what is current (--json), or a GitLab CI or GitHub Actions pipeline of them")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this recipe or image (repeatable; an image brings its ancestors)")
    p.add_argument("--format", choices=("table", "json", "gitlab-ci", "github-actions"),
                   default="table", help="table (default), json, or a CI pipeline in YAML")
    p = add("run", cmd_run, "run one step of the plan (`basefactory plan` lists the ids);"
            " a current step does nothing")
    p.add_argument("step", metavar="STEP_ID", help="platform:P, wheel:RECIPE:P, image:IMAGE:P"
                   " or fit:IMAGE:P")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")
    add("ls", cmd_ls, "what is published: platforms, images with tags, wheels")
    add("up", cmd_up, "start the engine, index and registry if they are not running")
    add("down", cmd_down, "stop what `up` started")
    add("status", cmd_status, "show the engine, index and registry")
    p = add("prune", cmd_prune, "delete old immutable image tags (dry run unless --yes) and"
            " garbage-collect the registry")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: all)")
    p.add_argument("--yes", action="store_true", help="delete (default: show what would go)")
    p.add_argument("--keep", type=_count, metavar="N",
                   help="newest immutable tags kept per image and platform ([retention] keep;"
                   " 0: only the moving tag's)")
    p.add_argument("--keep-days", type=float, metavar="D",
                   help="also keep tags younger than D days ([retention] keep_days)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run's lock (default: fail at once)")
    add("df", cmd_df, "space used per image and platform, per index, and on disk")
    p = add("outdated", cmd_outdated, "newer versions the index offers for each image lock and"
            " recipe: what --upgrade would take, and what is held back and why")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: all)")
    p.add_argument("--platform", action="append", metavar="P", help="only this platform")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # not set_defaults: the parents' actions are shared objects, and a default set on one
    # parser would reset a value given before the subcommand
    for name, default in (("config", None), ("json", False), ("debug", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    log.set_json_mode(bool(args.json))
    log.set_quiet(bool(args.quiet))
    try:
        result: int = args.handler(args)
        return result
    except BasefactoryError as exc:
        if args.debug:
            traceback.print_exc()
        log.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted: nothing half-done was published (rerun to complete)")
        return 130
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        hint = ("free some disk space and rerun: nothing half-written was published"
                if exc.errno == errno.ENOSPC else "check the path's permissions and rerun")
        log.error(f"{exc.strerror or exc}{where}\n  hint: {hint}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
