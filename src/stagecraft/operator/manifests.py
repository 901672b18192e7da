"""Migration Job manifests, built as plain data from the resource, its files' source and a hash.

Everything a Job needs is decided here, so it can be read and tested without a cluster:
the deterministic name (a restarted operator finds the Job it made instead of starting a second),
the init container that copies the migrations out of the application image, the runner command,
the Secret reference that is the only way the URL reaches the pod, and the locked-down pod.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..config import Strategy
from .models import API_VERSION, KIND, DatabaseMigrationSpec

MAX_NAME_LENGTH = 63  # Job names become the `job-name` label value on their pods
HASH_LENGTH = 10

# Where the runner finds the files inside the pod, whatever their source.
MIGRATIONS_MOUNT = "/stagecraft/migrations"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RUNNER_CONTAINER = "migrate"
COPY_CONTAINER = "copy-migrations"
# A knex Job's extra steps (knex_job.py): the plan before Knex, and Knex in the application image.
KNEX_PLAN_CONTAINER = "plan"
KNEX_CONTAINER = "knex"
KNEX_STATE_MOUNT = "/stagecraft/state"
KNEX_ENGINE = "knex"
URL_VARIABLE = "STAGECRAFT_DATABASE_URL"  # what the CLI reads without --config

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "stagecraft-operator"
TARGET_HASH_LABEL = "stagecraft.dev/target-hash"
STRATEGY_LABEL = "stagecraft.dev/strategy"  # how urgent the Job's end is (handlers.follow_job)
RESOURCE_ANNOTATION = "stagecraft.dev/database-migration"
ATTEMPT_ANNOTATION = "stagecraft.dev/attempt"

# The CLI's exit codes (docs/cli.md) that retrying the same pod cannot fix: a failed migration,
# invalid input, a refused plan. Exit 3 (database unreachable) counts toward backoffLimit.
NON_RETRIABLE_EXIT_CODES = (1, 2, 4)
NON_ROOT_USER = 65532


@dataclass(frozen=True)
class ResourceIdentity:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class MigrationSource:
    """Where this run's files come from, resolved: an image, or a ConfigMap and its content."""

    image: str | None = None
    config_map: str | None = None
    config_map_digest: str | None = None  # changes when the ConfigMap's files change

    def __post_init__(self) -> None:
        if (self.image is None) == (self.config_map is None):
            raise ValueError("a migration source is an image or a ConfigMap, exactly one")


@dataclass(frozen=True)
class RunnerSettings:
    """Operator-wide settings for the runner container."""

    image: str  # the Stagecraft image
    lock_timeout_seconds: float = 60.0


def config_map_digest(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def target_hash(spec: DatabaseMigrationSpec, source: MigrationSource) -> str:
    """Hash of what a run migrates: engine, folder, options, the files' source and the database.

    The strategy and the pod settings are left out on purpose: changing when or how a run
    happens must not make the same migrations run again.
    """
    content = {
        "engine": spec.migrations.engine,
        "path": spec.migrations.path,
        "options": spec.migrations.options,
        "image": source.image,
        "configMap": source.config_map,
        "configMapDigest": source.config_map_digest,
        "secret": spec.connection.secret_key_ref.model_dump(),
    }
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def job_name(resource_name: str, hash_of_target: str, attempt: int = 1) -> str:
    """`<resource>-<hash>`, at most 63 characters, one name per target and attempt.

    The suffix hashes the full resource name with the target, so two long names that share
    their first 52 characters still get different Jobs. A retry is a new attempt and so a new
    Job (a finished Job cannot be started again), while the same attempt always finds its Job.
    """
    key = f"{resource_name}\0{hash_of_target}" + (f"\0{attempt}" if attempt > 1 else "")
    suffix = hashlib.sha256(key.encode()).hexdigest()
    prefix = resource_name[: MAX_NAME_LENGTH - HASH_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{suffix[:HASH_LENGTH]}"


def _restricted_container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_USER,
        "runAsGroup": NON_ROOT_USER,
        "fsGroup": NON_ROOT_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _option_text(value: object) -> str:
    """An option value as `--option key=value` text: the CLI hands it to the engine's model,
    which reads "true"/"false" and numbers from text; lists and mappings go as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else str(value)
    )


def runner_arguments(spec: DatabaseMigrationSpec, settings: RunnerSettings) -> list[str]:
    """`stagecraft migrate run` for this resource, with the JSON document on stdout."""
    arguments = ["stagecraft", "migrate", "run", "--engine", spec.migrations.engine]
    arguments += ["--path", MIGRATIONS_MOUNT]
    for key, value in sorted(spec.migrations.options.items()):
        arguments += ["--option", f"{key}={_option_text(value)}"]
    arguments += ["--lock-timeout", f"{settings.lock_timeout_seconds:g}", "--output", "json"]
    return arguments


def _reporting(arguments: list[str]) -> list[str]:
    """A Stagecraft command wrapped so that its JSON document also becomes the termination
    message."""
    return [
        "python",
        "-m",
        "stagecraft.operator.job_runner",
        "--termination-message-path",
        TERMINATION_MESSAGE_PATH,
        "--",
        *arguments,
    ]


def runner_command(spec: DatabaseMigrationSpec, settings: RunnerSettings) -> list[str]:
    if spec.migrations.engine == KNEX_ENGINE:
        return _reporting(knex_step_arguments(spec, "after"))
    return _reporting(runner_arguments(spec, settings))


def knex_step_arguments(spec: DatabaseMigrationSpec, step: str) -> list[str]:
    """`knex_job before|after`: the plan options only; Knex's own settings stay with Knex."""
    arguments = ["python", "-m", "stagecraft.operator.knex_job", step, "--path", MIGRATIONS_MOUNT]
    arguments += ["--state", f"{KNEX_STATE_MOUNT}/plan.json"]
    for key, value in sorted(spec.migrations.options.items()):
        if key in KNEX_PLAN_OPTIONS:
            arguments += ["--option", f"{key}={_option_text(value)}"]
    return arguments


# Knex engine options that shape the plan (the rest say how Knex runs: knex_command's business).
KNEX_PLAN_OPTIONS = frozenset({"table", "schema", "load_extensions", "sort_dirs_separately"})


def knex_project_root(spec: DatabaseMigrationSpec) -> str | None:
    """Where Knex runs in the application image: `project_root`, absolute or relative to the
    migrations folder's parent, which is the default (`/app/migrations` -> `/app`). None: the
    image's own working directory (a relative `migrations` folder lies in it)."""
    parent = PurePosixPath(spec.migrations.path).parent
    root = posixpath.normpath(parent / str(spec.migrations.options.get("project_root") or "."))
    return None if root == "." else root


def knex_command(spec: DatabaseMigrationSpec) -> list[str]:
    """The project's own `knex migrate:latest`, run from its project root."""
    options = spec.migrations.options
    command = [str(options.get("node") or "node")]
    command.append(str(options.get("knex_bin") or "node_modules/knex/bin/cli.js"))
    command.append("migrate:latest")
    if options.get("knexfile"):
        command += ["--knexfile", str(options["knexfile"])]
    if options.get("environment"):
        command += ["--env", str(options["environment"])]
    return command


def _environment(spec: DatabaseMigrationSpec) -> list[dict[str, Any]]:
    secret = spec.connection.secret_key_ref
    environment: list[dict[str, Any]] = [
        {
            "name": spec.connection.env,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
        }
    ]
    if spec.connection.env != URL_VARIABLE:
        # Kubernetes expands $(VAR) from the variables above it: the URL stays in the Secret.
        environment.append({"name": URL_VARIABLE, "value": f"$({spec.connection.env})"})
    environment += [
        variable.model_dump(by_alias=True, exclude_none=True) for variable in spec.job.env
    ]
    return environment


def _volumes_and_init(
    spec: DatabaseMigrationSpec, source: MigrationSource
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scratch = {"name": "tmp", "emptyDir": {}}
    if source.config_map is not None:
        volume = {"name": "migrations", "configMap": {"name": source.config_map}}
        return [volume, scratch], []
    copy: dict[str, Any] = {
        "name": COPY_CONTAINER,
        "image": source.image,
        # The trailing /. copies the folder's content, hidden files and subfolders included.
        "command": ["cp", "-R", f"{spec.migrations.path.rstrip('/')}/.", f"{MIGRATIONS_MOUNT}/"],
        "volumeMounts": [{"name": "migrations", "mountPath": MIGRATIONS_MOUNT}],
        "securityContext": _restricted_container_security(),
    }
    if spec.job.resources is not None:  # quotas and LimitRanges count init containers too
        copy["resources"] = spec.job.resources.model_dump(exclude_defaults=True)
    return [{"name": "migrations", "emptyDir": {}}, scratch], [copy]


def _container(
    spec: DatabaseMigrationSpec, name: str, image: str, command: list[str], mounts: list[str]
) -> dict[str, Any]:
    """A locked-down container with the URL from the Secret and the named volumes mounted."""
    paths = {"migrations": MIGRATIONS_MOUNT, "tmp": "/tmp", "state": KNEX_STATE_MOUNT}  # noqa: S108 - private emptyDirs
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command,
        "env": _environment(spec),
        "volumeMounts": [
            {"name": volume, "mountPath": paths[volume], "readOnly": volume == "migrations"}
            for volume in mounts
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": _restricted_container_security(),
    }
    if spec.job.resources is not None:
        container["resources"] = spec.job.resources.model_dump(exclude_defaults=True)
    return container


def _runner_container(spec: DatabaseMigrationSpec, settings: RunnerSettings) -> dict[str, Any]:
    mounts = ["migrations", "tmp"] + (["state"] if spec.migrations.engine == KNEX_ENGINE else [])
    return _container(
        spec, RUNNER_CONTAINER, settings.image, runner_command(spec, settings), mounts
    )


def _knex_steps(
    spec: DatabaseMigrationSpec, source: MigrationSource, settings: RunnerSettings
) -> list[dict[str, Any]]:
    """Before the runner: Stagecraft's plan, then the project's Knex in the application image
    (knex_job.py says why). Knex's output is its termination message when it fails."""
    plan = _container(
        spec,
        KNEX_PLAN_CONTAINER,
        settings.image,
        _reporting(knex_step_arguments(spec, "before")),
        ["migrations", "tmp", "state"],
    )
    knex = _container(spec, KNEX_CONTAINER, str(source.image), knex_command(spec), ["tmp"])
    root = knex_project_root(spec)
    if root is not None:
        knex["workingDir"] = root
    knex["terminationMessagePolicy"] = "FallbackToLogsOnError"
    url_variable = str(spec.migrations.options.get("url_env") or "DATABASE_URL")
    if url_variable not in {variable["name"] for variable in knex["env"]}:
        # The knexfile reads the URL from its own variable: expanded from the Secret's.
        knex["env"].append({"name": url_variable, "value": f"$({spec.connection.env})"})
    return [plan, knex]


def _pod_spec(
    spec: DatabaseMigrationSpec, source: MigrationSource, settings: RunnerSettings
) -> dict[str, Any]:
    volumes, init_containers = _volumes_and_init(spec, source)
    if spec.migrations.engine == KNEX_ENGINE:
        volumes.append({"name": "state", "emptyDir": {}})
        init_containers += _knex_steps(spec, source, settings)
    job = spec.job
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the runner talks to the database only
        "securityContext": _pod_security(),
        "containers": [_runner_container(spec, settings)],
        "volumes": volumes,
    }
    if init_containers:
        pod["initContainers"] = init_containers
    optional = {
        "serviceAccountName": job.service_account_name,
        "nodeSelector": job.node_selector or None,
        "tolerations": job.tolerations or None,
        "affinity": job.affinity,
        "imagePullSecrets": [{"name": ref.name} for ref in job.image_pull_secrets] or None,
    }
    pod.update({key: value for key, value in optional.items() if value is not None})
    return pod


def _fail_job_on(container: str, operator: str, codes: tuple[int, ...]) -> dict[str, Any]:
    return {
        "action": "FailJob",
        "onExitCodes": {"containerName": container, "operator": operator, "values": list(codes)},
    }


def _pod_failure_policy(spec: DatabaseMigrationSpec) -> dict[str, Any]:
    knex_rules = [
        _fail_job_on(KNEX_PLAN_CONTAINER, "In", NON_RETRIABLE_EXIT_CODES),
        # Knex's exit code does not tell a broken migration from a lost connection; the plan
        # step reached the database a moment before, so a failure is the migration's.
        _fail_job_on(KNEX_CONTAINER, "NotIn", (0,)),
    ]
    return {
        "rules": [
            _fail_job_on(RUNNER_CONTAINER, "In", NON_RETRIABLE_EXIT_CODES),
            *(knex_rules if spec.migrations.engine == KNEX_ENGINE else []),
            # An evicted or preempted pod is no attempt of the migration: try again for free.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def labels_for(hash_of_target: str, strategy: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "stagecraft",
        "app.kubernetes.io/component": "migration",
        MANAGED_BY_LABEL: MANAGED_BY,
        TARGET_HASH_LABEL: hash_of_target,
        STRATEGY_LABEL: strategy,
    }


def a_rollout_waits_for(job: Mapping[str, Any]) -> bool:
    """Whether a held rollout waits for this Job's end: a pre_deploy Job, or one that does not
    say its strategy (made before the label was): its end is urgent. Any other Job's end only
    has its result to record, which the Job keeps meanwhile."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    strategy = str(labels.get(STRATEGY_LABEL, Strategy.PRE_DEPLOY.value))
    return strategy == Strategy.PRE_DEPLOY.value


def job_manifest(
    resource: ResourceIdentity,
    spec: DatabaseMigrationSpec,
    source: MigrationSource,
    hash_of_target: str,
    settings: RunnerSettings,
    *,
    attempt: int = 1,
) -> dict[str, Any]:
    labels = labels_for(hash_of_target, spec.migrations.strategy.value)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.job.backoff_limit,
        "podFailurePolicy": _pod_failure_policy(spec),
        "template": {
            "metadata": {
                "labels": {**spec.job.pod_labels, **labels},
                "annotations": dict(spec.job.pod_annotations),
            },
            "spec": _pod_spec(spec, source, settings),
        },
    }
    if spec.job.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.job.active_deadline_seconds
    if spec.job.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.job.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(resource.name, hash_of_target, attempt),
            "namespace": resource.namespace,
            "labels": labels,
            "annotations": {RESOURCE_ANNOTATION: resource.name, ATTEMPT_ANNOTATION: str(attempt)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": resource.name,
                    "uid": resource.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
