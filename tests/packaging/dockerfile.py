"""Reading a Dockerfile and replaying its build without Docker, for the packaging tests.

No Docker engine runs on the development machines. The replay gives every container path the
Dockerfile uses (under MAPPED_TOP_LEVEL) a place in one host directory, the image root; each
stage starts from an empty root at that same host path, so the absolute paths a venv bakes into
its scripts stay valid when `COPY --from` carries it into the next stage, and whatever a stage
did not copy is gone. RUN lines run with `/bin/sh -c` like `docker build`; COPY reads the build
context through .dockerignore with Docker's matching rules; ENV and ARG are tracked both as the
container sees them and with paths mapped to the host. An instruction or flag it does not know
fails loudly, so a Dockerfile change cannot be silently skipped.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Top-level container directories the replay maps into the image root. Other absolute paths in
# RUN, ENV, WORKDIR or COPY are refused: as root, the replay would otherwise write to the host.
MAPPED_TOP_LEVEL = ("opt", "src", "wheels", "tmp")
# Read-only system locations of the base image that commands may name as they are.
SYSTEM_TOP_LEVEL = ("usr", "bin", "sbin", "etc", "dev", "lib", "lib64", "proc")
SHELL = ("/bin/sh", "-c")  # Docker's default SHELL on Linux
STEP_TIMEOUT_SECONDS = 1200
# Host settings a RUN step inherits besides the Dockerfile's ENV, so that a machine behind a
# proxy or a package mirror can still replay the build.
PASSED_THROUGH = re.compile(
    r"^(PIP_\w+|(?i:https?_proxy|no_proxy)|SSL_CERT_\w+|REQUESTS_CA_BUNDLE)$"
)

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/$-])/([\w.-]*)")


class ReplayError(AssertionError):
    """The Dockerfile cannot be replayed, or one of its steps failed; the message says where."""


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined
    line: int

    def exec_form(self) -> list[str] | None:
        if not self.arguments.startswith("["):
            return None
        words = json.loads(self.arguments)
        if not (isinstance(words, list) and all(isinstance(word, str) for word in words)):
            raise ReplayError(f"line {self.line}: {self.keyword} is not a JSON list of strings")
        return words


def parse(text: str) -> list[Instruction]:
    """Instructions with comments dropped and continuation lines (a trailing `\\`) joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment and empty lines inside continuations too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        keyword, _, arguments = " ".join([*pending, stripped]).partition(" ")
        pending = []
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    if pending:
        raise ReplayError(f"line {start}: the file ends inside a continuation")
    return instructions


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-default}`, as Docker substitutes them."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match[1] or match[3], "")
        return found if found or match[2] is None else match[2]

    return _VARIABLE.sub(value, text)


def assignments(arguments: str) -> list[tuple[str, str]]:
    """`KEY=value KEY2="quoted value"` words (ENV, LABEL, ARG), quotes removed."""
    pairs = []
    for word in shlex.split(arguments):
        key, separator, value = word.partition("=")
        if not separator:
            raise ReplayError(f"{word!r}: only the KEY=value form is supported")
        pairs.append((key, value))
    return pairs


@dataclass(frozen=True)
class Stage:
    name: str | None
    base: str  # the FROM reference as written, variables not yet substituted
    instructions: tuple[Instruction, ...]
    line: int


def split_stages(instructions: Iterable[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (before the first FROM) and the stages."""
    global_arguments: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] = []
    header: Instruction | None = None
    for instruction in instructions:
        if instruction.keyword == "FROM":
            if header is not None:
                stages.append(_stage(header, current))
            header, current = instruction, []
        elif header is None:
            if instruction.keyword != "ARG":
                raise ReplayError(f"line {instruction.line}: only ARG may come before FROM")
            name, _, default = instruction.arguments.partition("=")
            global_arguments[name] = default
        else:
            current.append(instruction)
    if header is None:
        raise ReplayError("the Dockerfile has no FROM")
    stages.append(_stage(header, current))
    return global_arguments, stages


def _stage(header: Instruction, instructions: list[Instruction]) -> Stage:
    words = header.arguments.split()
    if len(words) == 3 and words[1].upper() == "AS":
        return Stage(words[2], words[0], tuple(instructions), header.line)
    if len(words) != 1:
        raise ReplayError(f"line {header.line}: FROM with flags is not supported: {header}")
    return Stage(None, words[0], tuple(instructions), header.line)


class DockerIgnore:
    """.dockerignore with the rules of Docker's pattern matcher (moby/patternmatcher):
    patterns are cleaned paths relative to the context; `*` and `?` stay within a path element,
    `**` spans elements; a pattern that matches a parent folder matches the files in it; `!`
    re-includes; the last matching pattern decides."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            cleaned = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.patterns.append((exclusion, re.compile(_pattern_regex(cleaned))))

    def excludes(self, relative: str) -> bool:
        parents = relative.split("/")[:-1]
        candidates = [relative] + ["/".join(parents[: i + 1]) for i in range(len(parents))]
        excluded = False
        for exclusion, pattern in self.patterns:
            if exclusion != excluded:
                continue  # only a re-inclusion can change an excluded file, and the reverse
            if any(pattern.fullmatch(candidate) for candidate in candidates):
                excluded = not exclusion
        return excluded


def _pattern_regex(pattern: str) -> str:
    regex, index = "", 0
    while index < len(pattern):
        character = pattern[index]
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif character == "*":
            regex, index = regex + "[^/]*", index + 1
        elif character == "?":
            regex, index = regex + "[^/]", index + 1
        elif character == "[":
            end = pattern.index("]", index)
            regex, index = regex + pattern[index : end + 1], end + 1
        else:
            regex, index = regex + re.escape(character), index + 1
    return regex


@dataclass
class StageResult:
    """A replayed stage: its files under `root`, and what the image records about it."""

    name: str | None
    root: Path
    environment: dict[str, str]  # as the container sees it
    host_environment: dict[str, str]  # with mapped paths pointing into `root`
    arguments: dict[str, str]
    workdir: str = "/"
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    healthcheck: str | None = None


def rewrite_paths(text: str, root: Path) -> str:
    """Container paths under the mapped top-level folders, moved into `root`."""
    tops = "|".join(MAPPED_TOP_LEVEL)
    return re.sub(rf"(?<![\w.~/$-])(?=/(?:{tops})(?![\w.-]))", str(root).replace("\\", "/"), text)


def check_paths(text: str, line: int) -> None:
    for match in _ABSOLUTE_PATH.finditer(text):
        top = match[1]
        if top and top not in MAPPED_TOP_LEVEL and top not in SYSTEM_TOP_LEVEL:
            raise ReplayError(
                f"line {line}: /{top} is not a path the replay maps (tests/packaging/dockerfile.py"
                f" MAPPED_TOP_LEVEL): keep the image's files under {MAPPED_TOP_LEVEL} or add it"
            )


@dataclass
class Replay:
    """Replays a Dockerfile's stages in order. `base_environment` stands in for the base image:
    its container-side ENV and the same with host paths (a PATH that leads to a host Python of
    the base image's version and to nothing else that could mask a missing file)."""

    dockerfile: Path
    context: Path
    workspace: Path
    base_environment: dict[str, str]
    base_host_environment: dict[str, str]
    passed_through: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ignore_file = self.context / ".dockerignore"
        ignore_text = ignore_file.read_text(encoding="utf-8") if ignore_file.exists() else ""
        self.ignore = DockerIgnore(ignore_text)
        self.global_arguments, self.stages = split_stages(
            parse(self.dockerfile.read_text(encoding="utf-8"))
        )
        self.root = self.workspace / "root"  # every stage's files live here while it runs
        self.finished: dict[str, StageResult] = {}

    def run(self) -> StageResult:
        """Every stage; the last one's result, its files left in `self.root`."""
        result: StageResult | None = None
        for index, stage in enumerate(self.stages):
            if result is not None:  # the previous stage's files move aside, under its name
                kept = self.workspace / f"stage-{index - 1}"
                self.root.rename(kept)
                result.root = kept
            result = self._stage(stage)
            self.finished[stage.name or str(index)] = result
        assert result is not None
        return result

    def _stage(self, stage: Stage) -> StageResult:
        base = expand(stage.base, self.global_arguments)
        if base in self.finished:
            raise ReplayError(f"line {stage.line}: FROM an earlier stage is not supported")
        self.root.mkdir(parents=True)
        (self.root / "tmp").mkdir(mode=0o1777)
        result = StageResult(
            stage.name,
            self.root,
            dict(self.base_environment),
            dict(self.base_host_environment),
            arguments={},
        )
        for instruction in stage.instructions:
            step = getattr(self, f"_{instruction.keyword.lower()}", None)
            if step is None:
                raise ReplayError(
                    f"line {instruction.line}: the replay does not know {instruction.keyword}"
                )
            step(result, instruction)
        return result

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def _arg(self, result: StageResult, instruction: Instruction) -> None:
        name, separator, default = instruction.arguments.partition("=")
        value = default if separator else self.global_arguments.get(name, "")
        result.arguments[name] = expand(value, {**result.environment, **result.arguments})

    def _env(self, result: StageResult, instruction: Instruction) -> None:
        check_paths(instruction.arguments, instruction.line)
        before, host_before = dict(result.environment), dict(result.host_environment)
        for key, value in assignments(instruction.arguments):
            result.environment[key] = expand(value, {**result.arguments, **before})
            host_value = rewrite_paths(value, self.root)
            result.host_environment[key] = expand(host_value, {**result.arguments, **host_before})

    def _label(self, result: StageResult, instruction: Instruction) -> None:
        variables = {**result.arguments, **result.environment}
        for key, value in assignments(instruction.arguments):
            result.labels[key] = expand(value, variables)

    def _workdir(self, result: StageResult, instruction: Instruction) -> None:
        check_paths(instruction.arguments, instruction.line)
        target = expand(instruction.arguments, {**result.arguments, **result.environment})
        result.workdir = posixpath.normpath(posixpath.join(result.workdir, target))
        self.host_path(result.workdir).mkdir(parents=True, exist_ok=True)

    def _user(self, result: StageResult, instruction: Instruction) -> None:
        result.user = expand(instruction.arguments, {**result.arguments, **result.environment})

    def _expose(self, result: StageResult, instruction: Instruction) -> None:
        result.exposed += instruction.arguments.split()

    def _healthcheck(self, result: StageResult, instruction: Instruction) -> None:
        result.healthcheck = instruction.arguments

    def _cmd(self, result: StageResult, instruction: Instruction) -> None:
        result.command = instruction.exec_form() or [*SHELL, instruction.arguments]

    def _entrypoint(self, result: StageResult, instruction: Instruction) -> None:
        result.entrypoint = instruction.exec_form() or [*SHELL, instruction.arguments]
        result.command = []  # Docker resets an inherited CMD when ENTRYPOINT is set

    def _run(self, result: StageResult, instruction: Instruction) -> None:
        if instruction.exec_form() is not None or instruction.arguments.startswith("--"):
            raise ReplayError(f"line {instruction.line}: use a shell-form RUN without flags")
        check_paths(instruction.arguments, instruction.line)
        command = rewrite_paths(instruction.arguments, self.root)
        arguments = {
            key: rewrite_paths(value, self.root) for key, value in result.arguments.items()
        }
        environment = {**self.passed_through, **arguments, **result.host_environment}
        completed = subprocess.run(
            [*SHELL, command],
            cwd=self.host_path(result.workdir),
            env=environment,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr).strip().splitlines()
            raise ReplayError(
                f"Dockerfile line {instruction.line} failed with exit code "
                f"{completed.returncode}:\n  RUN {instruction.arguments}\n"
                + "\n".join(output[-40:])
            )

    def _copy(self, result: StageResult, instruction: Instruction) -> None:
        words = instruction.exec_form() or shlex.split(instruction.arguments)
        flags = [word for word in words if word.startswith("--")]
        words = [word for word in words if not word.startswith("--")]
        source_stage = None
        for flag in flags:
            if not flag.startswith("--from="):
                raise ReplayError(f"line {instruction.line}: COPY {flag} is not supported")
            source_stage = self.finished.get(flag.removeprefix("--from="))
            if source_stage is None:
                raise ReplayError(f"line {instruction.line}: no earlier stage {flag}")
        *sources, destination = words
        variables = {**result.arguments, **result.environment}
        destination = posixpath.join(result.workdir, expand(destination, variables))
        check_paths(destination, instruction.line)
        into_folder = destination.endswith("/") or len(sources) > 1
        for written in sources:
            source = expand(written, variables)
            if source_stage is not None:
                origin = source_stage.root / source.lstrip("/")
                self._copy_from_stage(origin, destination, into_folder, instruction.line)
            else:
                self._copy_from_context(source, destination, into_folder, instruction.line)

    def _copy_from_stage(self, origin: Path, destination: str, into: bool, line: int) -> None:
        if not origin.exists():
            raise ReplayError(f"line {line}: COPY --from: {origin} does not exist in that stage")
        target = self.host_path(destination)
        if origin.is_dir():
            shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
        else:
            target = target / origin.name if into else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target, follow_symlinks=False)

    def _copy_from_context(self, source: str, destination: str, into: bool, line: int) -> None:
        relative = posixpath.normpath(source)
        if relative.startswith("..") or any(character in relative for character in "*?["):
            raise ReplayError(f"line {line}: COPY {source}: outside the context or a wildcard")
        origin = self.context / relative
        if not origin.exists() or self.ignore.excludes(relative):
            raise ReplayError(
                f"line {line}: COPY {source}: not in the build context (missing, or excluded by "
                ".dockerignore)"
            )
        if origin.is_file():
            target = self.host_path(destination)
            target = target / origin.name if into else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
            return
        copied = 0
        for folder, _, files in os.walk(origin):
            for name in files:
                path = Path(folder) / name
                inside = path.relative_to(self.context).as_posix()
                if self.ignore.excludes(inside):
                    continue
                target = self.host_path(destination) / path.relative_to(origin)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied += 1
        if not copied:
            raise ReplayError(f"line {line}: COPY {source}: .dockerignore leaves nothing in it")
