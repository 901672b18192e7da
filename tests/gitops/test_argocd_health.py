"""The Argo CD health check for DatabaseMigration, run in Lua 5.1 as Argo CD runs it.

Statuses are built with the operator's own condition code (`conditions.updated_conditions`, the
planner and `runs.verdict_for`) and dumped like the operator writes them, so a change to the
shape or the reasons of the operator's status breaks these tests before it breaks Argo CD users.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lupa.lua51 import LuaError  # type: ignore[import-untyped]

from stagecraft.operator.conditions import (
    READY,
    RECONCILING,
    STALLED,
    Phase,
    Reason,
    Verdict,
    updated_conditions,
)
from stagecraft.operator.manifests import MigrationSource
from stagecraft.operator.models import (
    API_VERSION,
    KIND,
    Condition,
    DatabaseMigrationStatus,
    RunFailure,
    RunRecord,
)
from stagecraft.operator.planner import Observed, decide
from stagecraft.operator.runs import verdict_for
from stagecraft.operator.validation import validate_spec
from tests.gitops.argocd_lua import ArgoHealthCheck, Health

HEALTH_SCRIPT = Path(__file__).parents[2] / "charts" / "stagecraft" / "files" / "argocd-health.lua"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TIMESTAMP = "2026-01-01T12:00:00Z"
GENERATION = 3

# What Argo CD shows for each phase the operator can write, and for the reasons that differ from
# their phase. Every reason must be listed in REASON_PHASE (by value, so a reason still being
# added elsewhere can be listed ahead of it): a new reason fails
# test_every_reason_has_a_decided_health until someone decides what Argo CD should show for it.
HEALTH_BY_PHASE = {
    Phase.READY: "Healthy",
    Phase.RECONCILING: "Progressing",
    Phase.STALLED: "Degraded",
    Phase.WAITING: "Progressing",
}
HEALTH_BY_REASON = {
    Reason.WAITING_FOR_RUN_REQUEST.value: "Healthy",
    Reason.WAITING_FOR_DEPLOYMENT.value: "Healthy",
}
REASON_PHASE = {
    "Succeeded": Phase.READY,
    "JobRunning": Phase.RECONCILING,
    "RetryScheduled": Phase.RECONCILING,
    "WaitingForRollout": Phase.RECONCILING,  # post_deploy: the rollout is still going out
    "ReleasePending": Phase.RECONCILING,  # pre_deploy: migrated; the release is tried again
    "InvalidSpec": Phase.STALLED,
    "SourceNotFound": Phase.STALLED,
    "MigrationFailed": Phase.STALLED,
    "RunRefused": Phase.STALLED,
    "DatabaseUnavailable": Phase.STALLED,
    "JobFailed": Phase.STALLED,
    "GateBypassed": Phase.STALLED,  # pre_deploy: pods of a template ran before its migration
    "RolloutFailed": Phase.STALLED,  # post_deploy: ProgressDeadlineExceeded
    "WaitingForRunRequest": Phase.WAITING,
    "WaitingForDeployment": Phase.WAITING,  # spec.deployment, the files' source, not created yet
}

ABSENT = "absent"
CONDITION_STATES = ("True", "False", ABSENT)
OBSERVED, OLDER, MISSING = "observed", "older", "missing"


@pytest.fixture(scope="module")
def health_check() -> ArgoHealthCheck:
    return ArgoHealthCheck(HEALTH_SCRIPT.read_text())


def _resource(status: dict[str, Any] | None, generation: int = GENERATION) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "shop-db", "namespace": "shop", "generation": generation},
        "spec": {
            "migrations": {"engine": "raw", "path": "/app/migrations"},
            "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
            "deployment": {"name": "shop-api"},
        },
    }
    if status is not None:
        resource["status"] = status
    return resource


def _status_document(conditions: list[Condition], observed_generation: int | None) -> Any:
    """The status exactly as the operator's status write serialises it."""
    status = DatabaseMigrationStatus(observed_generation=observed_generation, conditions=conditions)
    return status.model_dump(by_alias=True, mode="json")


def _written_by_operator(verdict: Verdict, generation: int = GENERATION) -> dict[str, Any]:
    conditions = updated_conditions([], verdict, generation, TIMESTAMP)
    return _resource(_status_document(conditions, generation), generation)


def _condition(condition_type: str, status: str) -> Condition:
    return Condition(
        type=condition_type,
        status="True" if status == "True" else "False",
        reason=f"Example{condition_type}",
        message=f"{condition_type} is {status}",
        observed_generation=GENERATION,
        last_transition_time=TIMESTAMP,
    )


def _expected(stalled: str, reconciling: str, ready: str, generation_state: str) -> str:
    if generation_state != OBSERVED:
        return "Progressing"
    if stalled == "True":
        return "Degraded"
    if reconciling == "True":
        return "Progressing"
    if ready == "True":
        return "Healthy"
    return "Progressing"


@pytest.mark.parametrize(
    ("stalled", "reconciling", "ready", "generation_state"),
    list(
        itertools.product(
            CONDITION_STATES, CONDITION_STATES, CONDITION_STATES, (OBSERVED, OLDER, MISSING)
        )
    ),
)
def test_every_combination_follows_the_precedence_rule(
    health_check: ArgoHealthCheck, stalled: str, reconciling: str, ready: str, generation_state: str
) -> None:
    states = {STALLED: stalled, RECONCILING: reconciling, READY: ready}
    conditions = [
        _condition(condition_type, state)
        for condition_type, state in states.items()
        if state != ABSENT
    ]
    observed = {OBSERVED: GENERATION, OLDER: GENERATION - 1, MISSING: None}[generation_state]

    health = health_check.assess(_resource(_status_document(conditions, observed)))

    assert health.status == _expected(stalled, reconciling, ready, generation_state)
    if generation_state != OBSERVED:
        assert health.message == f"waiting for the operator to observe generation {GENERATION}"
    elif stalled == "True":
        assert health.message == "ExampleStalled: Stalled is True"
    elif reconciling == "True":
        assert health.message == "ExampleReconciling: Reconciling is True"


def test_a_resource_without_status_is_progressing(health_check: ArgoHealthCheck) -> None:
    health = health_check.assess(_resource(None))
    assert health == Health("Progressing", "waiting for the operator to report status")


def test_an_observed_resource_without_conditions_is_progressing(
    health_check: ArgoHealthCheck,
) -> None:
    health = health_check.assess(_resource({"observedGeneration": GENERATION}))
    assert health == Health("Progressing", "waiting for the operator to report the Ready condition")


def test_ready_unknown_is_progressing_with_its_message(health_check: ArgoHealthCheck) -> None:
    ready = Condition(
        type=READY,
        status="Unknown",
        reason="Starting",
        message="checking the database",
        last_transition_time=TIMESTAMP,
    )
    health = health_check.assess(_resource(_status_document([ready], GENERATION)))
    assert health == Health("Progressing", "Starting: checking the database")


def test_a_newer_observed_generation_is_trusted(health_check: ArgoHealthCheck) -> None:
    """A status stamped past metadata.generation (a replaced object) is not waited on forever."""
    resource = _written_by_operator(
        Verdict(Phase.READY, Reason.SUCCEEDED, "applied 1 migration(s)"), generation=5
    )
    resource["metadata"]["generation"] = 4
    assert health_check.assess(resource).status == "Healthy"


def test_every_reason_has_a_decided_health() -> None:
    undecided = {reason.value for reason in Reason} - set(REASON_PHASE)
    assert not undecided, f"decide what Argo CD shows for {sorted(undecided)}"
    assert set(Phase) == set(HEALTH_BY_PHASE)


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_the_operator_writes_maps_to_its_health(
    health_check: ArgoHealthCheck, reason: Reason
) -> None:
    phase = REASON_PHASE[reason.value]
    verdict = Verdict(phase, reason, f"a message for {reason.value}")

    health = health_check.assess(_written_by_operator(verdict))

    assert health.status == HEALTH_BY_REASON.get(reason.value, HEALTH_BY_PHASE[phase])
    assert health.message == f"{reason.value}: a message for {reason.value}"


def _spec(**migrations: Any) -> dict[str, Any]:
    spec: dict[str, Any] = _resource(None)["spec"]
    spec["migrations"].update(migrations)
    return spec


def _observed(spec: dict[str, Any], **overrides: Any) -> Observed:
    fields: dict[str, Any] = {
        "resource_name": "shop-db",
        "validation": validate_spec(spec),
        "source": MigrationSource(image="shop-api:42"),
        "now": NOW,
    }
    fields.update(overrides)
    return Observed(**fields)


def test_a_migration_being_started_is_progressing(health_check: ArgoHealthCheck) -> None:
    decision = decide(_observed(_spec()))
    health = health_check.assess(_written_by_operator(decision.verdict))
    assert health.status == "Progressing"
    assert health.message is not None
    assert health.message.startswith("JobRunning: migration Job ")


def test_a_succeeded_run_is_healthy(health_check: ArgoHealthCheck) -> None:
    run = RunRecord(job="shop-db-1a2b3c", target_hash="1a2b3c", result="Succeeded", applied_count=2)
    health = health_check.assess(_written_by_operator(verdict_for(run)))
    assert health == Health(
        "Healthy", "Succeeded: applied 2 migration(s); the database is up to date"
    )


def test_a_failed_migration_is_degraded_naming_the_file(health_check: ArgoHealthCheck) -> None:
    failure = RunFailure(
        error="MigrationFailed",
        migration="20260102090000_create_orders",
        file="20260102090000_create_orders.sql",
        line=3,
        sqlstate="42P07",
        message='relation "orders" already exists',
    )
    run = RunRecord(job="shop-db-1a2b3c", target_hash="1a2b3c", result="Failed", failure=failure)

    health = health_check.assess(_written_by_operator(verdict_for(run)))

    assert health.status == "Degraded"
    assert health.message == (
        "MigrationFailed: migration Job shop-db-1a2b3c failed: "
        '20260102090000_create_orders.sql: relation "orders" already exists'
    )


def test_an_invalid_spec_is_degraded(health_check: ArgoHealthCheck) -> None:
    decision = decide(_observed(_spec(engine="flyway")))
    health = health_check.assess(_written_by_operator(decision.verdict))
    assert health.status == "Degraded"
    assert health.message is not None
    assert health.message.startswith("InvalidSpec: ")
    assert "flyway" in health.message


def test_a_missing_config_map_is_degraded(health_check: ArgoHealthCheck) -> None:
    spec = _spec()
    spec["configMap"] = {"name": "shop-migrations"}
    problem = "ConfigMap shop/shop-migrations not found"
    decision = decide(_observed(spec, source=None, source_problem=problem))
    health = health_check.assess(_written_by_operator(decision.verdict))
    assert health == Health("Degraded", f"SourceNotFound: {problem}")


def test_a_resource_waiting_for_its_deployment_is_healthy_so_the_wave_can_proceed(
    health_check: ArgoHealthCheck,
) -> None:
    # In an earlier sync wave than its Deployment: Argo CD must move on to the next wave to
    # create the Deployment, which the webhook then pauses (argoproj/argo-cd#29663).
    problem = "Deployment shop/shop-api not found"
    decision = decide(_observed(_spec(), source=None, source_problem=problem))
    assert decision.verdict.reason is Reason.WAITING_FOR_DEPLOYMENT

    health = health_check.assess(_written_by_operator(decision.verdict))

    assert health == Health("Healthy", f"WaitingForDeployment: {decision.verdict.message}")


def test_a_manual_resource_waiting_for_its_run_request_is_healthy_so_a_sync_can_end(
    health_check: ArgoHealthCheck,
) -> None:
    decision = decide(_observed(_spec(strategy="manual")))
    assert decision.verdict.reason is Reason.WAITING_FOR_RUN_REQUEST

    health = health_check.assess(_written_by_operator(decision.verdict))

    # Suspended would keep a multi-wave Argo CD sync Running forever (argoproj/argo-cd#29663).
    assert health.status == "Healthy"
    assert health.message == f"WaitingForRunRequest: {decision.verdict.message}"


def test_a_manual_resource_with_a_run_request_is_progressing(
    health_check: ArgoHealthCheck,
) -> None:
    decision = decide(_observed(_spec(strategy="manual"), run_request="2026-01-01T12:00:00Z"))
    health = health_check.assess(_written_by_operator(decision.verdict))
    assert health.status == "Progressing"


def test_a_failure_after_a_running_job_turns_degraded(health_check: ArgoHealthCheck) -> None:
    """The second status write keeps the first's conditions list and flips their statuses."""
    running = updated_conditions(
        [], Verdict(Phase.RECONCILING, Reason.JOB_RUNNING, "migration Job j is running"), 3, "t1"
    )
    failed = updated_conditions(
        running, Verdict(Phase.STALLED, Reason.JOB_FAILED, "migration Job j failed"), 3, "t2"
    )
    health = health_check.assess(_resource(_status_document(failed, GENERATION)))
    assert health == Health("Degraded", "JobFailed: migration Job j failed")


def test_conditions_of_other_types_do_not_count(health_check: ArgoHealthCheck) -> None:
    foreign = Condition(
        type="Stalled-by-someone-else",
        status="True",
        reason="Other",
        last_transition_time=TIMESTAMP,
    )
    conditions = updated_conditions(
        [foreign], Verdict(Phase.READY, Reason.SUCCEEDED, "applied 0 migration(s)"), 3, TIMESTAMP
    )
    health = health_check.assess(_resource(_status_document(conditions, GENERATION)))
    assert health.status == "Healthy"


def test_a_condition_without_a_message_still_names_its_reason(
    health_check: ArgoHealthCheck,
) -> None:
    stalled = Condition(type=STALLED, status="True", reason="JobFailed", last_transition_time="t")
    health = health_check.assess(_resource(_status_document([stalled], GENERATION)))
    assert health == Health("Degraded", "JobFailed: the migration needs a person")


def test_the_sandbox_has_no_string_library_as_in_argo_cd() -> None:
    """Guards the sandbox itself: a script Argo CD could not run must fail here too."""
    with pytest.raises(LuaError, match="attempt to index global 'string'"):
        ArgoHealthCheck('return {status = string.lower("Healthy")}').assess({})
    with pytest.raises(LuaError, match="attempt to index a string value"):
        ArgoHealthCheck('return {status = ("Healthy"):lower()}').assess({})


def test_the_sandbox_is_lua_5_1() -> None:
    # `goto` is Lua 5.2: Lua 5.1 reads it as a variable name and wants an assignment.
    with pytest.raises(LuaError, match="'=' expected near 'done'"):
        ArgoHealthCheck("goto done ::done:: return {status = 'Healthy'}").assess({})
    with pytest.raises(AssertionError, match="Unknown"):
        ArgoHealthCheck("return {status = 'Fine'}").assess({})
