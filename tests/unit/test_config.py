"""factory.toml: the default file is valid, and every malformed one is one clear error, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from basefactory.cli import main
from basefactory.config.factory import load_factory
from basefactory.config.loader import load_toml
from basefactory.config.models import FactoryConfig
from basefactory.plumbing.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[index]
port = 3141

[platforms.cpu]
description = "test"
[platforms.cpu.bootstrap]
torch = "torch==2.13.0+cpu"
"""


def write(tmp_path: Path, text: str, name: str = "factory.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_default_factory_toml_is_valid() -> None:
    config = load_toml(ROOT / "factory.toml", FactoryConfig)
    assert "cpu-py311-torch2.13" in config.platforms
    boot = config.platforms["cpu-py311-torch2.13"].bootstrap
    assert boot is not None and boot.torch == "torch==2.13.0+cpu"
    assert config.index.base_url == "http://127.0.0.1:3141"
    assert config.registry.address == "127.0.0.1:5000"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    factory = load_factory(write(tmp_path, GOOD))
    assert factory.config.index.user == "factory"
    assert factory.state_dir == tmp_path / ".factory"
    assert factory.platforms() == ["cpu"]


def test_external_services(tmp_path: Path) -> None:
    factory = load_factory(write(tmp_path, """
        [index]
        embedded = false
        url = "https://devpi.example.com/"
        [registry]
        embedded = false
        url = "http://registry.example.com:5000"
        [platforms.ngc]
        image = "nvcr.io/nvidia/pytorch:24.09-py3"
    """))
    assert factory.config.index.base_url == "https://devpi.example.com"
    assert factory.config.registry.address == "registry.example.com:5000"


# (id, toml, substrings the one-line error must contain)
MALFORMED: list[tuple[str, str, list[str]]] = [
    ("toml-syntax", "[index\nport = 1", ["line 1", "TOML syntax error"]),
    ("unquoted-string", "[index]\nhost = localhost", ["line 2", "TOML syntax error"]),
    ("duplicate-platform", GOOD + "\n[platforms.cpu]\ndescription='again'\n",
     ["line", "TOML syntax error"]),
    ("duplicate-key", "[index]\nport = 1\nport = 2\n" + GOOD.replace("[index]\nport = 3141", ""),
     ["line 3"]),
    ("unknown-top-key", "platfroms = 1\n" + GOOD, ["unknown key `platfroms`", "did you mean `platforms`"]),
    ("unknown-index-key", GOOD.replace("port = 3141", "prot = 3141"), ["index.prot", "port"]),
    ("unknown-registry-key", GOOD + "[registry]\nnamspace = 'x'\n", ["registry.namspace"]),
    ("unknown-engine-key", GOOD + "[engine]\nstart_dockerd = true\n", ["engine.start_dockerd"]),
    ("unknown-platform-key", GOOD + "[platforms.gpu]\nimage='a/b:1'\ngpu = true\n",
     ["platforms.gpu.gpu"]),
    ("unknown-bootstrap-key", GOOD.replace('torch = "torch', 'pytorch = "x"\ntorch = "torch'),
     ["platforms.cpu.bootstrap.pytorch", "`torch`"]),
    ("port-type", GOOD.replace("port = 3141", "port = 'abc'"), ["index.port", "'abc'"]),
    ("port-range", GOOD.replace("port = 3141", "port = 70000"), ["index.port", "65535"]),
    ("port-zero", GOOD.replace("port = 3141", "port = 0"), ["index.port"]),
    ("embedded-type", GOOD + "[registry]\nembedded = 'maybe'\n", ["registry.embedded"]),
    ("missing-platforms", "[index]\nport = 3141\n", ["missing required field `platforms`"]),
    ("empty-platforms", "[platforms]\n", ["platforms", "at least one platform"]),
    ("missing-torch", "[platforms.cpu.bootstrap]\nsuite = 'bookworm'\n",
     ["platforms.cpu.bootstrap.torch", "missing"]),
    ("no-image-no-bootstrap", "[platforms.cpu]\ndescription = 'x'\n",
     ["platforms.cpu", "exactly one of `image`"]),
    ("image-and-bootstrap", GOOD.replace('description = "test"', 'image = "a/b:1"'),
     ["platforms.cpu", "exactly one"]),
    ("torch-unpinned", GOOD.replace("torch==2.13.0+cpu", "torch>=2.0"),
     ["bootstrap.torch", "exact torch"]),
    ("torch-not-torch", GOOD.replace("torch==2.13.0+cpu", "numpy==1.0"),
     ["bootstrap.torch", "not torch"]),
    ("torch-garbage", GOOD.replace("torch==2.13.0+cpu", "torch ==== 2"),
     ["bootstrap.torch", "not a requirement"]),
    ("platform-name-upper", GOOD.replace("[platforms.cpu]", "[platforms.CPU]").replace(
        "[platforms.cpu.bootstrap]", "[platforms.CPU.bootstrap]"), ["platforms", "CPU"]),
    ("platform-name-space", '[platforms."c p u"]\nimage = "a/b:1"\n', ["platforms", "c p u"]),
    ("platform-collision", '[platforms.cpu-a]\nimage = "a/b:1"\n[platforms.cpu_a]\nimage = "a/b:1"\n',
     ["cpu-a", "cpu_a", "rename"]),
    ("bad-index-url", GOOD.replace("port = 3141", "embedded = false\nurl = 'not a url'"),
     ["index.url", "URL"]),
    ("bad-registry-url", GOOD + "[registry]\nembedded = false\nurl = 'ftp//x'\n",
     ["registry.url"]),
    ("external-index-without-url", GOOD.replace("port = 3141", "embedded = false"),
     ["index", "needs `url`"]),
    ("embedded-index-with-url", GOOD.replace("port = 3141", "url = 'http://x:1'"),
     ["index", "external index"]),
    ("external-registry-without-url", GOOD + "[registry]\nembedded = false\n",
     ["registry", "needs `url`"]),
    ("bad-image-ref", '[platforms.ngc]\nimage = "nvcr.io/nvidia pytorch"\n', ["platforms.ngc.image"]),
    ("bad-apt-package", GOOD + "apt = ['Bad Package!']\n", ["bootstrap.apt", "Debian package"]),
    ("apt-not-list", GOOD + "apt = 'gcc'\n", ["bootstrap.apt"]),
    ("bad-suite", GOOD + "suite = 'Bookworm 12'\n", ["bootstrap.suite"]),
    ("bad-python", GOOD + "python = 'three'\n", ["bootstrap.python"]),
    ("bad-mirror", GOOD + "mirror = 'deb.debian.org'\n", ["bootstrap.mirror"]),
    ("env-not-table", GOOD + "env = 'X=1'\n", ["bootstrap.env"]),
    ("env-value-type", GOOD + "[platforms.cpu.bootstrap.env]\nMAX_JOBS = 4\n",
     ["bootstrap.env.MAX_JOBS"]),
    ("wheelhouse-missing", GOOD + "wheelhouse = '/nonexistent/wheels'\n",
     ["bootstrap.wheelhouse", "not a directory"]),
    ("bad-user", GOOD.replace("port = 3141", "user = 'no/slash'"), ["index.user"]),
    ("bad-password-env", GOOD.replace("port = 3141", "password_env = '1BAD'"),
     ["index.password_env"]),
    ("bad-mirror-index", GOOD.replace("port = 3141", "mirror = 'pypi'"), ["index.mirror"]),
    ("platforms-not-table", "platforms = 3\n", ["platforms"]),
    ("bootstrap-not-table", "[platforms.cpu]\nbootstrap = 'debian'\n", ["platforms.cpu.bootstrap"]),
    ("state-dir-type", "state_dir = 5\n" + GOOD, ["state_dir"]),
    ("namespace-upper", GOOD + "[registry]\nnamespace = 'Factory'\n", ["registry.namespace"]),
    ("compression-unknown", GOOD + "[registry]\ncompression = ['gzip', 'lz4']\n",
     ["registry.compression", "zstd"]),
    ("compression-without-gzip", GOOD + "[registry]\ncompression = ['zstd']\n",
     ["registry.compression", "gzip is always published"]),
]


@pytest.mark.parametrize(("toml", "expected"), [(t, e) for _, t, e in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_config_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: list[str]
) -> None:
    path = write(tmp_path, toml)
    code = main(["--config", str(path), "config", "check"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    first_line = err.strip().splitlines()[0]
    assert str(path) in first_line, err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_at_least_thirty_distinct_malformed_configs() -> None:
    assert len({t for _, t, _ in MALFORMED}) >= 30


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(tmp_path / "nope.toml"), "config", "check"])
    err = capsys.readouterr().err
    assert code == 2 and "file not found" in err and "nope.toml" in err


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # root reads any file whatever its mode: a path through a regular file is unreadable
    # for everyone
    (tmp_path / "plain").write_text("x")
    assert main(["--config", str(tmp_path / "plain" / "factory.toml"), "config", "check"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path), "config", "check"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "factory.toml"
    path.write_bytes(b"[index]\nhost = '\xff\xfe'\n")
    assert main(["--config", str(path), "config", "check"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_error_points_at_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("port = 3141", "port = 'x'"))
    main(["--config", str(path), "config", "check"])
    assert f"{path}:3:" in capsys.readouterr().err


def test_unknown_platform_name_suggests(tmp_path: Path) -> None:
    factory = load_factory(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="did you mean `cpu`"):
        factory.platform("cpx")


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[index\n")
    assert main(["--debug", "--config", str(path), "config", "check"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_config_check_covers_recipes_and_images(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    # the shipped recipes make vllm twice (adopted, and from source where GitHub is reached)
    path = write(tmp_path, GOOD + '\n[wheels]\nexclude = ["vllm-source"]\n')
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "images", tmp_path / "images")
    assert main(["--config", str(path), "config", "check", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"torchsort"' in out and '"tts-deps"' in out
    (tmp_path / "images" / "tts-deps" / "image.toml").write_text(
        'parent = "cuda-dpes"\nsize_budget_mb = 1\n')
    assert main(["--config", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "no image `cuda-dpes`" in err and "tts-deps/image.toml" in err


def test_wheels_exclude_names_a_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[wheels]\nexclude = ['nope']\n" + GOOD)
    (tmp_path / "recipes").mkdir()
    assert main(["--config", str(path), "config", "check"]) == 2
    assert "wheels.exclude: no recipe `nope`" in capsys.readouterr().err


def test_the_debootstrap_mirror_defaults_to_the_hosts_apt_source(tmp_path: Path) -> None:
    from basefactory.platforms.rootfs import DEFAULT_MIRROR, host_apt_mirror

    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert host_apt_mirror(apt) == DEFAULT_MIRROR  # nothing configured
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert host_apt_mirror(apt) == "http://mirror.example/debian"
    (apt / "sources.list.d" / "debian.sources").unlink()
    (apt / "sources.list").write_text("# deb http://old.example/debian bookworm main\n"
                                      "deb [arch=amd64] http://local.example/debian bookworm main\n")
    assert host_apt_mirror(apt) == "http://local.example/debian"


def test_zstd_copies_are_opt_in(tmp_path: Path) -> None:
    assert not load_factory(write(tmp_path, GOOD)).config.registry.zstd
    on = load_factory(write(tmp_path, GOOD + "[registry]\ncompression = ['gzip', 'zstd']\n"))
    assert on.config.registry.zstd and on.config.registry.compression == ("gzip", "zstd")


def test_the_pusher_is_docker_unless_pigz_is_chosen(tmp_path: Path) -> None:
    assert load_factory(write(tmp_path, GOOD)).config.registry.push == "docker"
    chosen = load_factory(write(tmp_path, GOOD + "[registry]\npush = 'pigz'\n"))
    assert chosen.config.registry.push == "pigz"
    with pytest.raises(ConfigError) as caught:
        load_factory(write(tmp_path, GOOD + "[registry]\npush = 'fast'\n"))
    assert "registry.push" in str(caught.value) and "'docker' or 'pigz'" in str(caught.value)
