"""The image: the Dockerfile lints clean, pins what it installs, and its build steps, replayed
without Docker (tests/packaging/dockerfile.py), give an image whose commands work the way the
operator's migration Jobs and Deployment run them, on a read-only root filesystem.

The replay installs the pinned dependencies from PyPI as `docker build` would (no pip cache):
it needs the network and takes a minute or two. Its tests share one build and run in one xdist
group.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stagecraft.operator.manifests import (
    COPY_CONTAINER,
    KNEX_CONTAINER,
    KNEX_STATE_MOUNT,
    MIGRATIONS_MOUNT,
    NON_ROOT_USER,
    TERMINATION_MESSAGE_PATH,
    MigrationSource,
    ResourceIdentity,
    RunnerSettings,
    job_manifest,
)
from stagecraft.operator.models import DatabaseMigrationSpec

from .dockerfile import (
    PASSED_THROUGH,
    DockerIgnore,
    Replay,
    ReplayError,
    StageResult,
    parse,
    rewrite_paths,
    split_stages,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_PINS = ROOT / "requirements" / "runtime.txt"
BUILD_PINS = ROOT / "requirements" / "build.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# The python image's own environment, which the final stage's PATH extends.
BASE_IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PINNED_BASE = re.compile(
    r"^(docker\.io/library/)?python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$"
)
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Max retries exceeded|Name or service not known|"
    r"Temporary failure in name resolution|Network is unreachable|ConnectTimeout"
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)$")


def _stages() -> tuple[dict[str, str], list[str]]:
    arguments, stages = split_stages(parse(DOCKERFILE.read_text(encoding="utf-8")))
    return arguments, [stage.base for stage in stages]


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"{path.name}:{number}: {line!r} is not an exact `name==version` pin"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def _closure(requirements: list[Requirement]) -> dict[str, Requirement]:
    """Every distribution the runtime requirements pull in on Linux with this Python, extras
    included, by the metadata of the distributions installed in this environment."""
    environment = {key: str(value) for key, value in default_environment().items()}
    found: dict[str, Requirement] = {}
    queue = [(requirement, "") for requirement in requirements]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        seen_extras = found[name].extras if name in found else None
        if seen_extras is not None and requirement.extras <= seen_extras:
            continue
        found[name] = requirement
        wanted = requirement.extras | (seen_extras or set())
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies are for `pip check` to judge
        for text in requires:
            queue += [(Requirement(text), chosen) for chosen in ("", *sorted(wanted))]
    return found


# --- The Dockerfile as written ---------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: install the dev extras (pip install -e '.[dev]')"
    completed = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_every_ignored_hadolint_rule_says_why() -> None:
    for number, line in enumerate(DOCKERFILE.read_text(encoding="utf-8").splitlines(), 1):
        ignore = re.search(r"hadolint\s+(global\s+)?ignore=\S+(.*)", line)
        assert ignore is None or len(ignore[2].strip(" -:")) > 10, (
            f"Dockerfile:{number}: an ignored hadolint rule needs its reason on the same line"
        )


def test_every_stage_starts_from_the_pinned_slim_python_image() -> None:
    arguments, bases = _stages()
    for base in bases:
        reference = arguments.get(base.strip("${}"), base)
        assert PINNED_BASE.match(reference), f"FROM {base} ({reference}) is not pinned"
    assert len(set(bases)) == 1, "builder and final stage must share the interpreter"


def test_the_version_label_is_the_package_version() -> None:
    replay_arguments = {
        instruction.arguments.partition("=")[0]: instruction.arguments.partition("=")[2]
        for instruction in parse(DOCKERFILE.read_text(encoding="utf-8"))
        if instruction.keyword == "ARG"
    }
    assert replay_arguments["VERSION"] == PYPROJECT["project"]["version"]


def test_runtime_pins_are_exact_and_cover_every_runtime_dependency() -> None:
    pins = _pins(RUNTIME_PINS)
    assert "stagecraft" not in pins
    for name, requirement in _closure(_runtime_requirements()).items():
        assert name in pins, (
            f"{requirement} is a runtime dependency but requirements/runtime.txt does not pin it:"
            " regenerate the file (its header says how)"
        )
    for requirement in _runtime_requirements():
        pinned = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"requirements/runtime.txt pins {requirement.name}=={pinned}, outside {requirement}"
        )


def test_build_tools_are_pinned() -> None:
    pins = _pins(BUILD_PINS)
    assert set(pins) == {"pip", "setuptools"}
    backend = PYPROJECT["build-system"]["requires"]
    assert all(Requirement(text).specifier.contains(pins["setuptools"]) for text in backend)


def test_the_build_context_is_the_package_and_its_pins_only() -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    for kept in (
        "pyproject.toml",
        "README.md",
        "requirements/runtime.txt",
        "src/stagecraft/cli/__init__.py",
        "src/stagecraft/engines/knex_config.cjs",
    ):
        assert not ignore.excludes(kept), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "bench/bench_raw.py",
        "tools/node/node_modules/knex/package.json",
        "examples/demo.sh",
        "src/stagecraft/__pycache__/config.cpython-311.pyc",
        "src/stagecraft.egg-info/PKG-INFO",
        "app.db",
        ".env",
    ):
        assert ignore.excludes(left_out), left_out


def test_the_image_user_is_the_jobs_non_root_user() -> None:
    users = [i.arguments for i in parse(DOCKERFILE.read_text("utf-8")) if i.keyword == "USER"]
    assert users[-1] == f"{NON_ROOT_USER}:{NON_ROOT_USER}"


# --- The image, replayed -----------------------------------------------------------------------


@dataclass
class Image:
    final: StageResult
    builder: StageResult
    home: Path  # read-only: Stagecraft must not need a writable HOME
    snapshot: dict[str, tuple[int, int, int]]

    def run(
        self,
        argv: list[str],
        *,
        extra_environment: Mapping[str, str] | None = None,
        volumes: Mapping[str, Path] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`argv` run as the container runs it: the image's ENV, HOME not writable, the image's
        paths and then the `volumes` (container path: host folder) mapped; then a check that
        nothing outside /tmp and the volumes was written."""
        host_argv = []
        for word in argv:
            mapped = rewrite_paths(word, self.final.root)
            for container_path, host_path in (volumes or {}).items():
                mapped = mapped.replace(container_path, str(host_path))
            host_argv.append(mapped)
        environment = {**self.final.host_environment, "HOME": str(self.home)}
        completed = subprocess.run(
            host_argv,
            env={**environment, **(extra_environment or {})},
            cwd=self.final.root / self.final.workdir.lstrip("/"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        changed = _changes(self.snapshot, _snapshot(self.final.root))
        assert not changed, f"{argv} wrote to the read-only root filesystem: {changed[:10]}"
        return completed


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder of the image outside /tmp: mode, size, modification time."""
    entries = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative == "tmp" or relative.startswith("tmp/"):
            continue
        status = path.lstat()
        entries[relative] = (status.st_mode, status.st_size, status.st_mtime_ns)
    return entries


def _changes(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> list[str]:
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def _base_python(workspace: Path) -> Path:
    """A folder whose `python` is this machine's base interpreter (not a venv's), standing in
    for the base image's /usr/local/bin; nothing else on it could mask a missing script."""
    interpreter = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    assert interpreter.exists(), f"no base interpreter at {interpreter}"
    folder = workspace / "base-image-bin"
    folder.mkdir()
    for name in ("python", "python3", f"python3.{sys.version_info[1]}"):
        wrapper = folder / name
        wrapper.write_text(f'#!/bin/sh\nexec "{interpreter}" "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
    assert shutil.which("stagecraft", path=f"{folder}:{SYSTEM_PATH}") is None, (
        "a `stagecraft` command on the system PATH would hide a broken image: uninstall it"
    )
    return folder


def _require_package_index() -> None:
    index = urlparse(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    if index.scheme == "file":
        return
    host, port = index.hostname or "pypi.org", index.port or 443
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as error:
        pytest.fail(
            f"the package index {host}:{port} is unreachable ({error}): this test installs the "
            "image's pinned dependencies as `docker build` does. Connect to the network, or set "
            "PIP_INDEX_URL to a reachable mirror of PyPI."
        )


def _passed_through() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if PASSED_THROUGH.match(key)}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    _require_package_index()
    workspace = tmp_path_factory.mktemp("image")
    base_bin = _base_python(workspace)
    replay = Replay(
        dockerfile=DOCKERFILE,
        context=ROOT,
        workspace=workspace,
        base_environment={"PATH": BASE_IMAGE_PATH, "LANG": "C.UTF-8"},
        base_host_environment={"PATH": f"{base_bin}:{SYSTEM_PATH}", "LANG": "C.UTF-8"},
        passed_through=_passed_through(),
    )
    try:
        final = replay.run()
    except ReplayError as error:
        if NETWORK_ERRORS.search(str(error)):
            pytest.fail(
                "the package index could not be reached while installing the image's pinned "
                "dependencies (connect to the network, or set PIP_INDEX_URL to a reachable "
                f"mirror of PyPI):\n{error}"
            )
        raise
    builder = next(result for result in replay.finished.values() if result is not final)
    home = final.root / "home-not-writable"
    home.mkdir()
    for path in [final.root, *final.root.rglob("*")]:  # read-only, as far as permissions go
        if path.is_symlink() or path == final.root / "tmp" or (final.root / "tmp") in path.parents:
            continue
        path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o222)
    yield Image(final, builder, home, _snapshot(final.root))
    for path in [final.root, *final.root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.lstat().st_mode) | 0o200)
    shutil.rmtree(workspace)  # a few hundred megabytes: not kept with pytest's last runs


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_default_command_is_the_operator(image: Image) -> None:
    assert image.final.entrypoint + image.final.command == ["stagecraft", "operator"]
    completed = image.run(image.final.entrypoint + image.final.command)
    # Without a cluster it stops at its settings, after importing kopf, kubernetes and the rest.
    assert completed.returncode == 2, completed.stderr
    assert "STAGECRAFT_RUNNER_IMAGE is not set" in completed.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_operator_module_the_chart_may_run_starts(image: Image) -> None:
    completed = image.run(["python", "-m", "stagecraft.operator"])
    assert completed.returncode == 2, completed.stderr
    assert "STAGECRAFT_RUNNER_IMAGE is not set" in completed.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_cli_answers_and_knows_every_engine(image: Image) -> None:
    assert image.run(["stagecraft", "--help"]).returncode == 0
    engines = image.run(["stagecraft", "engines", "list", "--output", "json"])
    assert engines.returncode == 0, engines.stderr
    assert set(json.loads(engines.stdout)["engines"]) >= {"raw", "drizzle", "prisma", "knex"}


def _expand_kubernetes(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda match: variables.get(match[1], ""), value)


RUNNER = RunnerSettings(image="stagecraft:test")


@dataclass(frozen=True)
class JobStep:
    """One container of a migration Job's pod, in the order the kubelet runs them."""

    name: str
    in_stagecraft_image: bool
    command: list[str]
    environment: dict[str, str]  # the Secret's value filled in, $(NAME) expanded


def _job_steps(migrations: dict[str, object], source: MigrationSource, url: str) -> list[JobStep]:
    """The containers of the Job the operator builds for this `spec.migrations`."""
    spec = DatabaseMigrationSpec.model_validate(
        {
            "migrations": migrations,
            "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
            "deployment": {"name": "shop-api"},
        }
    )
    identity = ResourceIdentity("shop", "shop-db", "uid-1")
    job = job_manifest(identity, spec, source, "0123456789abcdef", RUNNER)
    pod = job["spec"]["template"]["spec"]
    steps = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        environment: dict[str, str] = {}
        for variable in container.get("env", []):
            # Kubernetes expands $(NAME) from the variables above; the Secret gives the URL.
            value = url if "valueFrom" in variable else variable["value"]
            environment[variable["name"]] = _expand_kubernetes(value, dict(environment))
        in_image = container["image"] == RUNNER.image
        steps.append(JobStep(container["name"], in_image, container["command"], environment))
    return steps


def _run_stagecraft_steps(
    image: Image, steps: list[JobStep], volumes: Mapping[str, Path]
) -> list[str]:
    """Runs the Job's containers that use the Stagecraft image; the names of the others."""
    others = []
    for step in steps:
        if not step.in_stagecraft_image:
            others.append(step.name)
            continue
        completed = image.run(step.command, extra_environment=step.environment, volumes=volumes)
        assert completed.returncode == 0, f"{step.name}: {completed.stdout}{completed.stderr}"
    return others


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_jobs_runner_command_applies_migrations(image: Image, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20260101000000_customers.sql").write_text(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n", "utf-8"
    )
    (migrations / "20260102000000_orders.sql").write_text(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER);\n", "utf-8"
    )
    database = tmp_path / "shop.db"
    termination_log = tmp_path / "termination-log"
    volumes = {MIGRATIONS_MOUNT: migrations, TERMINATION_MESSAGE_PATH: termination_log}
    source = MigrationSource(config_map="shop-migrations", config_map_digest="d")
    steps = _job_steps(
        {"engine": "raw", "path": "/app/migrations"}, source, f"sqlite:///{database}"
    )
    assert _run_stagecraft_steps(image, steps, volumes) == []
    summary = json.loads(termination_log.read_text(encoding="utf-8"))
    assert summary["status"] == "succeeded", summary
    assert [entry["id"] for entry in summary["applied"]] == [
        "20260101000000_customers.sql",
        "20260102000000_orders.sql",
    ]
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"customers", "orders"} <= tables


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_knex_jobs_stagecraft_steps_run_without_node(image: Image, tmp_path: Path) -> None:
    """A knex Job runs Knex in the application image; the Stagecraft image only plans before it
    and reads Knex's table after it, with no Node.js. Knex's step is played here by writing the
    rows Knex writes."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20260101_customers.js").write_text("exports.up = async () => {};\n", "utf-8")
    database = tmp_path / "shop.db"
    termination_log = tmp_path / "termination-log"
    state = tmp_path / "state"
    state.mkdir()
    volumes = {
        MIGRATIONS_MOUNT: migrations,
        KNEX_STATE_MOUNT: state,
        TERMINATION_MESSAGE_PATH: termination_log,
    }
    source = MigrationSource(image="registry.example/shop-api:42")
    steps = _job_steps(
        {"engine": "knex", "path": "/app/migrations"}, source, f"sqlite:///{database}"
    )
    knex = next(index for index, step in enumerate(steps) if step.name == KNEX_CONTAINER)
    assert not steps[knex].in_stagecraft_image
    assert _run_stagecraft_steps(image, steps[:knex], volumes) == [COPY_CONTAINER]
    assert json.loads(termination_log.read_text("utf-8"))["pending"] == ["20260101_customers.js"]
    with sqlite3.connect(database) as connection:  # what `knex migrate:latest` records
        connection.executescript(
            "CREATE TABLE knex_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name VARCHAR(255), batch INTEGER, migration_time DATETIME);"
            "CREATE TABLE knex_migrations_lock"
            " (`index` INTEGER PRIMARY KEY AUTOINCREMENT, is_locked INTEGER);"
            "INSERT INTO knex_migrations_lock (is_locked) VALUES (0);"
            "INSERT INTO knex_migrations (name, batch, migration_time)"
            " VALUES ('20260101_customers.js', 1, 1767225600000);"
        )
    assert _run_stagecraft_steps(image, steps[knex + 1 :], volumes) == []
    summary = json.loads(termination_log.read_text(encoding="utf-8"))
    assert summary["status"] == "succeeded", summary
    assert [entry["id"] for entry in summary["applied"]] == ["20260101_customers.js"]


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_migrate_run_on_the_command_line(image: Image, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_init.sql").write_text("CREATE TABLE t (id INTEGER);\n", "utf-8")
    argv = ["stagecraft", "migrate", "run", "--engine", "raw", "--path", "/data/migrations"]
    argv += ["--database-url", "sqlite:////data/app.db", "--output", "json"]
    first = image.run(argv, volumes={"/data": tmp_path})
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["status"] == "succeeded"
    again = image.run(argv, volumes={"/data": tmp_path})
    assert again.returncode == 0
    assert json.loads(again.stdout)["applied"] == []


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_final_stage_holds_the_venv_and_no_build_tools(image: Image) -> None:
    root = image.final.root
    assert sorted(path.name for path in root.iterdir()) == ["home-not-writable", "opt", "tmp"]
    assert [path.name for path in (root / "opt").iterdir()] == ["stagecraft"]
    site_packages = next((root / "opt" / "stagecraft" / "lib").glob("python3.*/site-packages"))
    installed = {canonicalize_name(p.name.split("-")[0]) for p in site_packages.glob("*.dist-info")}
    assert installed.isdisjoint({"pip", "setuptools", "wheel"}), installed
    assert installed == {"stagecraft", *_pins(RUNTIME_PINS)}, installed
    assert (site_packages / "stagecraft" / "engines" / "knex_config.cjs").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_bytecode_is_compiled_hash_checked_at_build_time(image: Image) -> None:
    site_packages = next((image.final.root / "opt/stagecraft/lib").glob("python3.*/site-packages"))
    tag = sys.implementation.cache_tag
    for source in (site_packages / "stagecraft").rglob("*.py"):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert compiled.is_file(), f"{source} has no bytecode"
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b11, f"{compiled} is not a checked-hash pyc (flags {flags:#b})"


@pytest.mark.slow
@pytest.mark.xdist_group("image")
def test_the_image_settings(image: Image) -> None:
    final = image.final
    assert final.user == f"{NON_ROOT_USER}:{NON_ROOT_USER}"
    assert final.environment["HOME"] == "/tmp"  # noqa: S108 - the pod's private emptyDir
    assert final.environment["PYTHONDONTWRITEBYTECODE"] == "1"
    assert final.environment["PATH"].startswith("/opt/stagecraft/bin:")
    assert final.healthcheck == "NONE"
    assert final.labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]
    assert final.labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert set(final.exposed) == {"8080", "8081", "9443"}
