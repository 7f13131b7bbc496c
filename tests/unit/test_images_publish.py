"""images/publish.py: the build sequence of one image, each step a stand-in that records
it ran. What it must guarantee: nothing is labelled or pushed unless the build, the ABI
audit and the smoke test passed, in that order; a published build is never rebuilt, only
its moving tag finished; the labels carry what the catalog and fits read. The real
sequence runs in tests/integration on real images."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.audit.abi import AbiReport
from basefactory.images import publish, push
from basefactory.images.definition import load_image
from basefactory.images.lock import Lock
from basefactory.images.plan import ImagePlan, Parent
from basefactory.images.smoke import SmokeResult
from basefactory.plumbing.errors import BuildError, TestFailed
from basefactory.proofs import store_labels
from basefactory.refs import Labels, image_ref
from tests.helpers import small_factory
from tests.unit.test_adopt import FP

LOCK = "# basefactory lock\nnumpy==2.1.0 --hash=sha256:" + "1" * 64 + "\n"
WHEEL_LINE = "torchsort==0.1.10+pt213cpu --hash=sha256:" + "2" * 64
PARENT = Parent("127.0.0.1:5000/factory/base:p1", "d" * 64, {"torch": "2.13.0"}, "2.13.0")


def plan(existing: str | None = None) -> ImagePlan:
    lock = Lock(Path("locks/p1.txt"), {"numpy": "2.1.0"}, LOCK, reused=False)
    return ImagePlan(inputs="e" * 64, dockerfile="FROM base\n", lock=lock,
                     pins={"torchsort": "0.1.10+pt213cpu"}, wheel_lines=[WHEEL_LINE],
                     installed={"numpy": "2.1.0"}, existing=existing,
                     action="current" if existing else "build", reason="")


class Engine:
    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        self.labels: dict[str, str] = {}

    def build(self, context: Path, *, tags: list[str], labels: dict[str, str] | None = None,
              **kw: Any) -> str:
        self.steps.append("label" if labels else "build")
        self.labels = labels or self.labels
        return "sha256:1"

    def remove_image(self, ref: str) -> None:
        self.steps.append("remove-local")

    def image_id(self, ref: str) -> str | None:
        return "sha256:1"

    def tag(self, source: str, ref: str) -> None:
        self.steps.append(f"tag {ref.rsplit(':', 1)[1]}")

    def push(self, ref: str, **kw: Any) -> None:
        self.steps.append(f"engine-push {ref.rsplit(':', 1)[1]}")


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    steps: list[str] = []
    world = SimpleNamespace(steps=steps, plan=plan(), audit=AbiReport(modules=4, failures=[]),
                            smoke_error=None, missing={}, pushed=[])
    folder = tmp_path / "images" / "tts-deps"
    folder.mkdir(parents=True)
    (folder / "image.toml").write_text('description = "TTS"\nparent = "platform"\n'
                                       "size_budget_mb = 100\n")
    (folder / "requirements.in").write_text("numpy\n")
    world.image = load_image(folder)
    factory = small_factory(tmp_path)

    def audit(docker: Any, ref: str, **kw: Any) -> AbiReport:
        steps.append("audit")
        return world.audit  # type: ignore[no-any-return]

    def smoke(docker: Any, ref: str, **kw: Any) -> SmokeResult:
        steps.append("smoke")
        if world.smoke_error:
            raise TestFailed(world.smoke_error)
        return SmokeResult(["numpy"], "2.13.0", 5_000_000, [{"name": "numpy", "version": "2.1.0",
                                                            "size": 1}], [])

    def sbom(session: Any, image: str, platform: str, tag: str, local: str, labels: Any,
             work: Path) -> str:
        steps.append("sbom")
        return "{}"

    def wait_listed(index: str, locked: dict[str, str]) -> dict[str, str]:
        steps.append("locked-versions")
        return world.missing  # type: ignore[no-any-return]

    monkeypatch.setattr(publish, "plan_image", lambda *a, **kw: world.plan)
    monkeypatch.setattr(publish, "audit_image", audit)
    monkeypatch.setattr(publish, "smoke_test", smoke)
    monkeypatch.setattr(publish.sbom, "make", sbom)
    monkeypatch.setattr(publish.store, "require", lambda *a: FP)
    monkeypatch.setattr(publish.push, "push_build", lambda session, image, platform, tag, **kw: (
        steps.append("push"), world.pushed.append(image_ref(session.factory, image, tag))))
    monkeypatch.setattr(publish.push, "finish_build", lambda *a: steps.append("finish"))
    registry = SimpleNamespace(digest=lambda repo, tag: "sha256:parent" if "base" in repo else None,
                               labels=lambda repo, tag: {})
    world.engine = Engine(steps)
    devpi = SimpleNamespace(simple_url=lambda index: f"http://idx/{index}/+simple/",
                            wait_listed=wait_listed)
    world.session = SimpleNamespace(factory=factory, docker=world.engine, devpi=devpi,
                                    registry=registry)
    return world


def ensure(world: SimpleNamespace) -> Any:
    return publish.ensure_image(world.session, world.image, "p1", PARENT)


def test_a_new_build_is_checked_in_order_and_pushed_last(world: SimpleNamespace) -> None:
    result = ensure(world)
    assert world.steps == ["locked-versions", "build", "audit", "smoke", "sbom", "label",
                           "push", "remove-local"]
    assert result.state == "built" and result.tag.startswith("p1-") and result.tag.endswith(
        "e" * 12)
    assert world.pushed == [result.ref]
    factory = world.session.factory
    assert not (factory.state_dir / "build" / "images" / "tts-deps-p1").exists()


def test_the_labels_carry_the_inputs_the_files_the_lock_and_both_proofs(
        world: SimpleNamespace) -> None:
    ensure(world)
    labels = world.engine.labels
    assert labels[Labels.INPUT_DIGEST] == "e" * 64
    assert labels[Labels.OCI_BASE_NAME] == PARENT.ref
    assert labels[Labels.OCI_BASE_DIGEST] == "sha256:parent"  # the registry's, not ours
    assert labels[Labels.LOCK] == "numpy==2.1.0\n"
    assert json.loads(labels[Labels.WHEEL_FILES]) == {"torchsort": "2" * 64}
    assert json.loads(labels[Labels.WHEELS]) == {"torchsort": "0.1.10+pt213cpu"}
    proofs = store_labels.read(labels, image="tts-deps", platform="p1")
    assert sorted(str(p.kind) for p in proofs) == ["abi-audit", "smoke"]
    assert all(p.passed and p.inputs == "e" * 64 for p in proofs)


def test_a_failed_audit_stops_before_the_smoke_test_and_pushes_nothing(
        world: SimpleNamespace) -> None:
    world.audit = AbiReport(modules=4, failures=[{
        "dist": "torchsort", "module": "torchsort/_ext.so", "symbol": "_ZN3c104cuda9SetDevice"}])
    with pytest.raises(TestFailed, match="nothing was pushed"):
        ensure(world)
    assert world.steps == ["locked-versions", "build", "audit"] and world.pushed == []


def test_a_failed_smoke_test_pushes_nothing(world: SimpleNamespace) -> None:
    world.smoke_error = "promised packages do not import"
    with pytest.raises(TestFailed):
        ensure(world)
    assert "push" not in world.steps and "label" not in world.steps


def test_a_lock_pin_the_index_never_lists_builds_nothing(world: SimpleNamespace) -> None:
    world.missing = {"numpy": "2.1.0"}
    with pytest.raises(BuildError, match="does not list numpy==2.1.0, which the lock"):
        ensure(world)
    assert world.steps == ["locked-versions"]


def test_a_published_build_is_not_rebuilt_only_its_moving_tag_finished(
        world: SimpleNamespace) -> None:
    world.plan = plan(existing="p1-20261130-eeeeeeeeeeee")
    result = ensure(world)
    assert world.steps == ["finish"]
    assert result.state == "current" and result.tag == "p1-20261130-eeeeeeeeeeee"


def test_the_moving_tag_is_the_immutable_tags_manifest_byte_for_byte(
        world: SimpleNamespace) -> None:
    pushed: list[tuple[str, str, bytes, str]] = []
    manifest = SimpleNamespace(raw=b'{"schemaVersion":2}', media_type="application/x")
    world.session.registry = SimpleNamespace(
        manifest=lambda repo, tag: manifest if tag == "p1-x" else None,
        push_manifest=lambda *a: pushed.append(a), digest=lambda r, t: None)
    steps = push.actions_for(world.session, "tts-deps", "p1", "p1-x", bom=None, log_file=None)
    steps.push_immutable()
    steps.push_moving()
    assert world.steps == ["engine-push p1-x", "tag p1"]
    assert pushed == [("factory/tts-deps", "p1", b'{"schemaVersion":2}', "application/x")]
    gone = push.actions_for(world.session, "tts-deps", "p1", "p1-y", bom=None, log_file=None)
    with pytest.raises(BuildError, match="is gone from the registry"):
        gone.push_moving()


def test_the_revision_is_the_factorys_git_head_or_unknown(tmp_path: Path) -> None:
    assert publish._revision(tmp_path) == "unknown"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert publish._revision(tmp_path) == head.strip()


def test_the_build_context_holds_what_the_inputs_digest_names(tmp_path: Path,
                                                              world: SimpleNamespace) -> None:
    work = publish._build_context(tmp_path / "ctx", world.image, plan())
    assert sorted(p.name for p in work.iterdir()) == ["Dockerfile", "lock.txt", "uv",
                                                      "wheels.txt"]
    assert (work / "wheels.txt").read_text() == WHEEL_LINE + "\n"
    assert publish.Logs(tmp_path, "tts-deps-p1").of("smoke") == tmp_path / "tts-deps-p1-smoke.log"
