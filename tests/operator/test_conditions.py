"""Ready, Reconciling and Stalled are set together, in kstatus shape, with observedGeneration."""

from __future__ import annotations

from stagecraft.operator.conditions import (
    CONDITION_TYPES,
    Phase,
    Reason,
    Verdict,
    updated_conditions,
)
from stagecraft.operator.models import Condition

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def _statuses(conditions: list[Condition]) -> dict[str, str]:
    return {condition.type: condition.status for condition in conditions}


def test_each_phase_makes_exactly_its_condition_true() -> None:
    expected = {
        Phase.READY: {"Ready": "True", "Reconciling": "False", "Stalled": "False"},
        Phase.RECONCILING: {"Ready": "False", "Reconciling": "True", "Stalled": "False"},
        Phase.STALLED: {"Ready": "False", "Reconciling": "False", "Stalled": "True"},
        Phase.WAITING: {"Ready": "False", "Reconciling": "False", "Stalled": "False"},
    }
    for phase, statuses in expected.items():
        conditions = updated_conditions([], Verdict(phase, Reason.SUCCEEDED, ""), 1, T0)
        assert _statuses(conditions) == statuses, phase


def test_all_three_carry_reason_message_and_generation() -> None:
    verdict = Verdict(Phase.STALLED, Reason.MIGRATION_FAILED, "0002_x.sql: syntax error")
    conditions = updated_conditions([], verdict, 7, T0)
    assert [condition.type for condition in conditions] == list(CONDITION_TYPES)
    for condition in conditions:
        assert condition.reason == "MigrationFailed"
        assert condition.message == "0002_x.sql: syntax error"
        assert condition.observed_generation == 7


def test_transition_time_is_kept_while_the_status_does_not_change() -> None:
    running = updated_conditions([], Verdict(Phase.RECONCILING, Reason.JOB_RUNNING, "a"), 1, T0)
    still = updated_conditions(running, Verdict(Phase.RECONCILING, Reason.JOB_RUNNING, "b"), 2, T1)
    assert {condition.last_transition_time for condition in still} == {T0}


def test_transition_time_moves_for_the_conditions_that_flip() -> None:
    running = updated_conditions([], Verdict(Phase.RECONCILING, Reason.JOB_RUNNING, ""), 1, T0)
    ready = updated_conditions(running, Verdict(Phase.READY, Reason.SUCCEEDED, ""), 1, T1)
    times = {condition.type: condition.last_transition_time for condition in ready}
    assert times == {"Ready": T1, "Reconciling": T1, "Stalled": T0}


def test_conditions_of_other_writers_are_kept() -> None:
    foreign = Condition(type="Audited", status="True", reason="Done", last_transition_time=T0)
    conditions = updated_conditions([foreign], Verdict(Phase.READY, Reason.SUCCEEDED, ""), 1, T1)
    assert conditions[-1] == foreign
    assert len(conditions) == 4


def test_reasons_are_unique_camel_case_words() -> None:
    values = [reason.value for reason in Reason]
    assert len(set(values)) == len(values)
    for value in values:
        assert value[0].isupper()
        assert value.isalnum()
