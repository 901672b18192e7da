"""Migration Job manifests: names, hashing, the files' path into the pod, and a locked-down pod."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stagecraft.operator.manifests import (
    MAX_NAME_LENGTH,
    MIGRATIONS_MOUNT,
    MigrationSource,
    ResourceIdentity,
    RunnerSettings,
    a_rollout_waits_for,
    job_manifest,
    job_name,
    target_hash,
)
from stagecraft.operator.models import DatabaseMigrationSpec

RESOURCE = ResourceIdentity(namespace="shop", name="shop-db", uid="0b9f6e1c")
SETTINGS = RunnerSettings(image="ghcr.io/stagecraft/stagecraft:0.1.0")
APP_IMAGE = MigrationSource(image="registry.example/shop-api:41")

# Kubernetes object names: DNS-1123 subdomains of up to 253 characters.
_dns_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)
resource_names = st.lists(_dns_label, min_size=1, max_size=7).map(".".join)
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
hashes = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


def _spec(**overrides: Any) -> DatabaseMigrationSpec:
    raw: dict[str, Any] = {
        "migrations": {"engine": "raw", "path": "/app/migrations/", "options": {"table": "t"}},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api"},
    }
    raw.update(overrides)
    return DatabaseMigrationSpec.model_validate(raw)


def _job(spec: DatabaseMigrationSpec | None = None, source: MigrationSource = APP_IMAGE) -> Any:
    spec = spec or _spec()
    return job_manifest(RESOURCE, spec, source, target_hash(spec, source), SETTINGS)


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _runner(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(job)["containers"][0]
    return container


@settings(deadline=None)  # speed is not what these properties are about
@given(resource_names, hashes)
def test_job_names_fit_in_a_label_value(name: str, hash_of_target: str) -> None:
    assert len(job_name(name, hash_of_target)) <= MAX_NAME_LENGTH


@settings(deadline=None)  # speed is not what these properties are about
@given(resource_names, hashes)
def test_job_names_are_valid_object_names(name: str, hash_of_target: str) -> None:
    assert _SUBDOMAIN.match(job_name(name, hash_of_target))


@settings(deadline=None)  # speed is not what these properties are about
@given(resource_names, hashes)
def test_job_name_is_deterministic(name: str, hash_of_target: str) -> None:
    assert job_name(name, hash_of_target) == job_name(name, hash_of_target)


@settings(deadline=None)  # speed is not what these properties are about
@given(resource_names, hashes, hashes)
def test_a_new_target_gives_a_new_job_name(name: str, first: str, second: str) -> None:
    if first != second:
        assert job_name(name, first) != job_name(name, second)


def test_long_names_sharing_a_prefix_get_different_jobs() -> None:
    prefix = "a" * 60
    assert job_name(prefix + "-orders", "0" * 16) != job_name(prefix + "-billing", "0" * 16)


def test_short_name_is_readable_in_the_job_name() -> None:
    assert job_name("shop-db", "0123456789abcdef").startswith("shop-db-")


def test_target_hash_changes_with_the_image() -> None:
    other = MigrationSource(image="registry.example/shop-api:42")
    assert target_hash(_spec(), APP_IMAGE) != target_hash(_spec(), other)


def test_target_hash_changes_with_the_config_map_content() -> None:
    first = MigrationSource(config_map="files", config_map_digest="a")
    second = MigrationSource(config_map="files", config_map_digest="b")
    assert target_hash(_spec(), first) != target_hash(_spec(), second)


def test_target_hash_ignores_strategy_and_pod_settings() -> None:
    changed = _spec(
        migrations={
            "engine": "raw",
            "path": "/app/migrations/",
            "options": {"table": "t"},
            "strategy": "post_deploy",
        },
        job={"backoffLimit": 5, "podLabels": {"team": "shop"}},
    )
    assert target_hash(changed, APP_IMAGE) == target_hash(_spec(), APP_IMAGE)


def test_job_is_owned_by_its_resource_as_controller() -> None:
    (owner,) = _job()["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "stagecraft.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "name": "shop-db",
        "uid": "0b9f6e1c",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_job_and_pods_carry_the_strategy_label() -> None:
    migrations = {"engine": "raw", "path": "/app/migrations/", "strategy": "post_deploy"}
    job = _job(_spec(migrations=migrations))

    assert job["metadata"]["labels"]["stagecraft.dev/strategy"] == "post_deploy"
    assert job["spec"]["template"]["metadata"]["labels"]["stagecraft.dev/strategy"] == "post_deploy"


def test_only_a_pre_deploy_jobs_end_is_waited_for_by_a_rollout() -> None:
    """Its end releases a held rollout; another Job's end only has a result to record. A Job
    made before the label was counts as waited for: urgent rather than late."""

    def job_of(strategy: str) -> Any:
        migrations = {"engine": "raw", "path": "/app/migrations/", "strategy": strategy}
        return _job(_spec(migrations=migrations))

    unlabelled = _job()
    del unlabelled["metadata"]["labels"]["stagecraft.dev/strategy"]

    assert a_rollout_waits_for(job_of("pre_deploy"))
    assert not a_rollout_waits_for(job_of("post_deploy"))
    assert not a_rollout_waits_for(job_of("manual"))
    assert a_rollout_waits_for(unlabelled)


def test_job_and_pods_carry_the_target_hash_label() -> None:
    job = _job()
    expected = target_hash(_spec(), APP_IMAGE)
    assert job["metadata"]["labels"]["stagecraft.dev/target-hash"] == expected
    assert job["spec"]["template"]["metadata"]["labels"]["stagecraft.dev/target-hash"] == expected


def test_init_container_copies_the_folder_from_the_application_image() -> None:
    (copy,) = _pod(_job())["initContainers"]
    assert copy["image"] == "registry.example/shop-api:41"
    assert copy["command"] == ["cp", "-R", "/app/migrations/.", f"{MIGRATIONS_MOUNT}/"]
    assert copy["volumeMounts"] == [{"name": "migrations", "mountPath": MIGRATIONS_MOUNT}]
    assert {"name": "migrations", "emptyDir": {}} in _pod(_job())["volumes"]


def test_config_map_source_mounts_the_files_without_an_init_container() -> None:
    job = _job(source=MigrationSource(config_map="shop-migrations", config_map_digest="d"))
    assert "initContainers" not in _pod(job)
    assert {"name": "migrations", "configMap": {"name": "shop-migrations"}} in _pod(job)["volumes"]


def test_runner_runs_stagecraft_migrate_run_with_json_output() -> None:
    command = _runner(_job())["command"]
    assert command[:6] == [
        "python",
        "-m",
        "stagecraft.operator.job_runner",
        "--termination-message-path",
        "/dev/termination-log",
        "--",
    ]
    assert command[6:9] == ["stagecraft", "migrate", "run"]
    assert command[-2:] == ["--output", "json"]
    assert command[command.index("--path") :][:2] == ["--path", MIGRATIONS_MOUNT]
    assert "table=t" in command


def test_url_reaches_the_pod_only_through_the_secret_reference() -> None:
    env = _runner(_job())["env"]
    assert env[0] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
    }
    assert env[1] == {"name": "STAGECRAFT_DATABASE_URL", "value": "$(DATABASE_URL)"}


def test_runner_writes_its_document_to_the_termination_message_file() -> None:
    runner = _runner(_job())
    assert runner["terminationMessagePath"] == "/dev/termination-log"
    assert runner["terminationMessagePolicy"] == "File"


def test_pod_never_restarts_and_mounts_no_api_token() -> None:
    pod = _pod(_job())
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False


def test_every_container_is_restricted() -> None:
    pod = _pod(_job())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod["initContainers"]:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_failure_policy_fails_the_job_on_exit_codes_retrying_cannot_fix() -> None:
    rules = _job()["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"] == {
        "containerName": "migrate",
        "operator": "In",
        "values": [1, 2, 4],
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_job_settings_reach_the_job_and_pod() -> None:
    job = _job(
        _spec(
            job={
                "serviceAccountName": "migrator",
                "backoffLimit": 4,
                "activeDeadlineSeconds": 900,
                "ttlSecondsAfterFinished": 3600,
                "nodeSelector": {"pool": "jobs"},
                "tolerations": [{"key": "jobs", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {}},
                "imagePullSecrets": [{"name": "registry"}],
                "podLabels": {"team": "shop"},
                "podAnnotations": {"sidecar.istio.io/inject": "false"},
                "resources": {"limits": {"memory": "256Mi"}},
                "env": [{"name": "PGAPPNAME", "value": "stagecraft"}],
            }
        )
    )
    spec, pod, runner = job["spec"], _pod(job), _runner(job)
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (4, 900)
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert pod["serviceAccountName"] == "migrator"
    assert pod["nodeSelector"] == {"pool": "jobs"}
    assert pod["tolerations"] == [{"key": "jobs", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["template"]["metadata"]["labels"]["team"] == "shop"
    assert spec["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert runner["resources"] == {"limits": {"memory": "256Mi"}}
    assert pod["initContainers"][0]["resources"] == {"limits": {"memory": "256Mi"}}
    assert {"name": "PGAPPNAME", "value": "stagecraft"} in runner["env"]


def test_our_labels_win_over_pod_labels_of_the_same_name() -> None:
    job = _job(_spec(job={"podLabels": {"stagecraft.dev/target-hash": "forged"}}))
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["stagecraft.dev/target-hash"] == target_hash(_spec(), APP_IMAGE)


def test_option_values_are_passed_as_text_the_engine_model_reads() -> None:
    spec = _spec(
        migrations={
            "engine": "raw",
            "path": "/app/migrations",
            "options": {"table": "t", "flag": True, "count": 3, "names": ["a", "b"]},
        }
    )
    command = _runner(_job(spec))["command"]
    options = [command[index + 1] for index, part in enumerate(command) if part == "--option"]
    assert options == ["count=3", "flag=true", 'names=["a","b"]', "table=t"]
