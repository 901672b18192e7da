"""pre_deploy in the planner: the paused template's run starts at once and migrates that very
template's image; its success releases the Deployment; a bypassed gate stalls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stagecraft.operator.conditions import Phase, Reason
from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    PENDING_HASH_ANNOTATION,
    RESUME_REFUSED_ANNOTATION,
    GateStep,
    deployment_gate_hash,
)
from stagecraft.operator.manifests import MigrationSource, job_name, target_hash
from stagecraft.operator.models import RunRecord
from stagecraft.operator.planner import (
    Action,
    DeploymentObservation,
    Observed,
    decide,
    pods_matter,
)
from stagecraft.operator.sources import resolve_source
from stagecraft.operator.validation import validate_spec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD, NEW = "shop-api:41", "shop-api:42"


def _spec(strategy: str = "pre_deploy") -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": strategy},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }


def _deployment(image: str, annotations: dict[str, str], paused: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop-api", "namespace": "shop", "annotations": annotations},
        "spec": {
            "paused": paused,
            "selector": {"matchLabels": {"app": "shop-api"}},
            "template": {"spec": {"containers": [{"name": "api", "image": image}]}},
        },
    }


def _hash(image: str) -> str:
    return deployment_gate_hash(_deployment(image, {}, paused=False), ["api"])


def _pending(image: str = NEW) -> dict[str, Any]:
    """The webhook's work: NEW waits paused, OLD is the approved (serving) version."""
    annotations = {APPROVED_HASH_ANNOTATION: _hash(OLD), PENDING_HASH_ANNOTATION: _hash(image)}
    return _deployment(image, annotations, paused=True)


def _pod(name: str, image: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "api", "image": image}]}}


def _target(image: str, strategy: str = "pre_deploy") -> str:
    spec = validate_spec(_spec(strategy)).spec
    assert spec is not None
    return target_hash(spec, MigrationSource(image=image))


def _observed(
    deployment: dict[str, Any],
    pods: tuple[dict[str, Any], ...] = (),
    strategy: str = "pre_deploy",
    **overrides: Any,
) -> Observed:
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    fields: dict[str, Any] = {
        "resource_name": "shop-db",
        "validation": validate_spec(_spec(strategy)),
        "source": MigrationSource(image=image),
        "now": NOW,
        "deployment": DeploymentObservation(deployment, pods),
    }
    fields.update(overrides)
    return Observed(**fields)


def _succeeded(image: str) -> RunRecord:
    target = _target(image)
    return RunRecord(job=job_name("shop-db", target), target_hash=target, result="Succeeded")


class _UnusedCluster:
    """A Cluster that must not be asked: the reconcile's Deployment read is passed in."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"resolve_source must not call the cluster ({name})")


def test_the_run_migrates_the_paused_templates_image() -> None:
    spec = validate_spec(_spec()).spec
    assert spec is not None
    source = resolve_source(_UnusedCluster(), "shop", spec, _pending()).source
    assert source == MigrationSource(image=NEW)

    decision = decide(_observed(_pending()))

    assert decision.action is Action.CREATE_JOB
    assert decision.target_hash == _target(NEW)
    assert decision.gate is None  # nothing to do to the Deployment while the run is to come


def test_success_releases_the_pending_hash() -> None:
    decision = decide(_observed(_pending(), last_run=_succeeded(NEW)))

    assert decision.action is Action.KEEP_RESULT
    assert decision.gate == GateStep(_hash(NEW), release=True)
    assert "held paused" not in decision.verdict.message


def test_a_failure_keeps_the_deployment_paused() -> None:
    target = _target(NEW)
    failed = RunRecord(job=job_name("shop-db", target), target_hash=target, result="Failed")

    decision = decide(_observed(_pending(), last_run=failed))

    assert decision.verdict.phase is Phase.STALLED
    assert decision.gate is None
    assert "Deployment shop-api is held paused" in decision.verdict.message


def test_an_older_success_does_not_release_a_newer_pending_template() -> None:
    decision = decide(_observed(_pending("shop-api:43"), last_run=_succeeded(NEW)))

    assert decision.action is Action.CREATE_JOB  # the newer template's own migration runs
    assert decision.target_hash == _target("shop-api:43")
    assert decision.gate is None


def test_a_deployment_that_was_never_gated_is_approved_after_its_run() -> None:
    never_gated = _deployment(OLD, {}, paused=False)

    decision = decide(_observed(never_gated, last_run=_succeeded(OLD)))

    assert decision.gate == GateStep(_hash(OLD), approve=True)


def test_a_refused_resume_is_reported() -> None:
    deployment = _pending()
    deployment["metadata"]["annotations"][RESUME_REFUSED_ANNOTATION] = "bob"

    decision = decide(_observed(deployment, last_run=None))

    assert decision.gate == GateStep(_hash(NEW), resume_refused="bob")


def test_pods_of_the_unmigrated_template_stall_as_gate_bypassed_and_the_run_goes_on() -> None:
    bypassed = _deployment(NEW, {APPROVED_HASH_ANNOTATION: _hash(OLD)}, paused=False)
    pods = (_pod("shop-api-old-1", OLD), _pod("shop-api-new-1", NEW))

    decision = decide(_observed(bypassed, pods))

    assert decision.action is Action.CREATE_JOB  # the new version needs its schema now
    assert (decision.verdict.phase, decision.verdict.reason) == (
        Phase.STALLED,
        Reason.GATE_BYPASSED,
    )
    assert "shop-api-new-1" in decision.verdict.message
    assert "shop-api-old-1" not in decision.verdict.message


def test_a_bypassed_gate_clears_once_the_migration_succeeded() -> None:
    bypassed = _deployment(NEW, {APPROVED_HASH_ANNOTATION: _hash(OLD)}, paused=False)

    decision = decide(_observed(bypassed, (_pod("new-1", NEW),), last_run=_succeeded(NEW)))

    assert decision.verdict.phase is Phase.READY
    assert decision.gate == GateStep(_hash(NEW), approve=True)


def test_a_template_changed_behind_the_webhooks_back_releases_the_stale_pause() -> None:
    stale = _deployment(
        "shop-api:43",
        {APPROVED_HASH_ANNOTATION: _hash(OLD), PENDING_HASH_ANNOTATION: _hash(NEW)},
        paused=True,
    )

    decision = decide(_observed(stale, last_run=_succeeded("shop-api:43")))

    assert decision.gate == GateStep(_hash("shop-api:43"), release=True, stale_pending=_hash(NEW))


def test_other_strategies_leave_the_deployment_alone() -> None:
    target = _target(NEW, "post_deploy")
    run = RunRecord(job=job_name("shop-db", target), target_hash=target, result="Succeeded")

    decision = decide(_observed(_pending(), strategy="post_deploy", last_run=run))

    assert decision.gate is None


def test_pods_are_read_only_while_the_gate_could_have_been_bypassed() -> None:
    spec = validate_spec(_spec()).spec
    assert spec is not None

    def matter(deployment: dict[str, Any]) -> bool:
        return pods_matter(spec, deployment, None, _target(NEW))

    assert not matter(_pending())  # held paused: no pod of NEW can be new
    approved = _deployment(NEW, {APPROVED_HASH_ANNOTATION: _hash(NEW)}, paused=False)
    assert not matter(approved)
    assert not matter(_deployment(NEW, {}, paused=False))  # never gated: nothing to bypass
    assert matter(_deployment(NEW, {APPROVED_HASH_ANNOTATION: _hash(OLD)}, paused=False))
