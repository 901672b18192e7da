"""The `DatabaseMigration` resource as pydantic models: the one source of its schema.

The CRD in `crds/` is generated from these models (`stagecraft.operator.crd`). The spec mirrors a
`databases.<name>` entry of stagecraft.yml (its `migrations` block is the config's own model), plus
what Kubernetes needs: the Secret that holds the URL, where the migration files come from, and the
Job's pod settings. Engine ids are not enumerated here: the engine registry validates them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..config import MigrationsConfig

GROUP = "stagecraft.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DatabaseMigration"
PLURAL = "databasemigrations"
SINGULAR = "databasemigration"
SHORT_NAMES = ("dbm",)

# Requests people (or `stagecraft migrate retry|run --cluster`) write as annotations; each value is
# a token consumed once: the status records the last token handled.
RETRY_ANNOTATION = "stagecraft.dev/retry"  # start a fresh attempt now, whatever the last result
RUN_REQUEST_ANNOTATION = "stagecraft.dev/run-request"  # manual strategy: run once

# The same rule as `connection_env` in stagecraft.yml, enforced by the API server through the CRD.
ENVIRONMENT_VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Kubernetes object names referenced from the spec (DNS-1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

FreeForm = dict[str, Any]  # a Kubernetes structure passed to the pod as written (not re-modelled)


class _Model(BaseModel):
    """camelCase in Kubernetes, snake_case in Python; unknown fields are errors, as in the CRD."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(_Model):
    name: str = Field(pattern=OBJECT_NAME_PATTERN, description="Secret in the same namespace.")
    key: str = Field(min_length=1, description="Key of the Secret that holds the database URL.")


class ConnectionSpec(_Model):
    env: str = Field(
        default="DATABASE_URL",
        pattern=ENVIRONMENT_VARIABLE_PATTERN,
        description="Environment variable that carries the URL inside the Job "
        "(connection_env in stagecraft.yml).",
    )
    secret_key_ref: SecretKeyRef = Field(description="Where the database URL is stored.")


class DeploymentReference(_Model):
    name: str = Field(pattern=OBJECT_NAME_PATTERN, description="Deployment in the same namespace.")
    containers: list[str] = Field(
        default_factory=list,
        description="Containers whose images hold the migrations and whose changes call for a "
        "run; default: the first container.",
    )


class ConfigMapSource(_Model):
    name: str = Field(
        pattern=OBJECT_NAME_PATTERN, description="ConfigMap whose keys are the migration files."
    )


class LocalObjectReference(_Model):
    name: str = Field(min_length=1)


class EnvVar(_Model):
    name: str = Field(pattern=ENVIRONMENT_VARIABLE_PATTERN)
    value: str | None = None
    value_from: FreeForm | None = Field(
        default=None, description="As in a container's env (secretKeyRef, configMapKeyRef...)."
    )


class ResourceRequirements(_Model):
    limits: dict[str, str] = Field(default_factory=dict)
    requests: dict[str, str] = Field(default_factory=dict)


class JobSettings(_Model):
    """What users set on migration Jobs in practice; the operator owns everything else."""

    service_account_name: str | None = None
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[FreeForm] = Field(default_factory=list)
    affinity: FreeForm | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables.")
    backoff_limit: int = Field(
        default=2,
        ge=0,
        description="Pod retries for transient failures (database unreachable); a failed "
        "migration fails the Job at once.",
    )
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)


class DatabaseMigrationSpec(_Model):
    migrations: MigrationsConfig = Field(
        description="engine, path (the folder inside the image), strategy and engine options, "
        "as in stagecraft.yml."
    )
    connection: ConnectionSpec
    deployment: DeploymentReference | None = Field(
        default=None,
        description="The application whose rollout the migrations follow; by default its "
        "image holds the migrations.",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        description="Image holding the migrations folder, instead of the Deployment's.",
    )
    config_map: ConfigMapSource | None = Field(
        default=None, description="Migration files from a ConfigMap instead of an image."
    )
    job: JobSettings = Field(default_factory=JobSettings)

    @model_validator(mode="after")
    def _one_source_of_files(self) -> DatabaseMigrationSpec:
        if self.image is not None and self.config_map is not None:
            raise ValueError("set either image or configMap, not both")
        if self.image is None and self.config_map is None and self.deployment is None:
            raise ValueError(
                "say where the migration files come from: deployment (its image), image or "
                "configMap"
            )
        return self


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    """A kstatus condition, shaped like metav1.Condition so Flux and Argo CD read it as-is."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str


class AppliedMigrationRecord(_Model):
    id: str
    duration_ms: int | None = None  # unknown for Knex inside a Job: Knex does not time them

    @model_serializer(mode="wrap")
    def _unknown_duration_is_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A list item is written whole: a null would fail the CRD's integer (or be pruned).
        data = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class RunFailure(_Model):
    """The migration that failed and the database's words for why (never a credential)."""

    error: str | None = Field(
        default=None, description="The runner's error type, e.g. MigrationFailed, RunRefused."
    )
    migration: str | None = None
    file: str | None = None
    line: int | None = None
    sqlstate: str | None = None
    message: str


RunResult = Literal["Running", "Succeeded", "Failed"]


class RunRecord(_Model):
    job: str
    target_hash: str
    attempt: int = Field(default=1, ge=1, description="Which attempt at this target.")
    result: RunResult
    started_at: str | None = None
    finished_at: str | None = None
    applied: list[AppliedMigrationRecord] = Field(default_factory=list)
    applied_count: int | None = Field(default=None, description="Migrations this run applied.")
    failure: RunFailure | None = None


class DatabaseMigrationStatus(_Model):
    model_config = ConfigDict(extra="ignore")  # kopf keeps its own bookkeeping in status too

    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    target_hash: str | None = Field(
        default=None, description="Hash of what the next run migrates (engine, files' source...)."
    )
    last_run: RunRecord | None = None
    pending: int | None = Field(default=None, description="Pending migrations, when known.")
    next_retry_at: str | None = Field(
        default=None, description="When the next automatic attempt starts (transient failures)."
    )
    handled_retry: str | None = Field(
        default=None, description="The last stagecraft.dev/retry token acted on."
    )
    handled_run_request: str | None = Field(
        default=None, description="The last stagecraft.dev/run-request token acted on."
    )
