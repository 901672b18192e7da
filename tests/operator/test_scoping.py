"""Namespace scoping by label selector: kubectl's selector syntax, and what comes into scope."""

from __future__ import annotations

import pytest

from stagecraft.operator.scoping import (
    NamespaceScope,
    Operator,
    Requirement,
    SelectorError,
    parse_selector,
)


def test_equality_requirements_all_must_hold() -> None:
    selector = parse_selector("team=shop, env==prod")
    assert selector.requirements == (
        Requirement("team", Operator.EQUALS, frozenset({"shop"})),
        Requirement("env", Operator.EQUALS, frozenset({"prod"})),
    )
    assert selector.matches({"team": "shop", "env": "prod", "other": "x"})
    assert not selector.matches({"team": "shop", "env": "dev"})
    assert not selector.matches({})


def test_inequality_also_holds_when_the_label_is_absent() -> None:
    selector = parse_selector("env!=dev")
    assert selector.matches({})
    assert selector.matches({"env": "prod"})
    assert not selector.matches({"env": "dev"})


def test_set_based_requirements_keep_their_commas_inside_parentheses() -> None:
    selector = parse_selector("env in (prod, staging),tier notin (batch),stagecraft.dev/enabled")
    assert selector.requirements == (
        Requirement("env", Operator.IN, frozenset({"prod", "staging"})),
        Requirement("tier", Operator.NOT_IN, frozenset({"batch"})),
        Requirement("stagecraft.dev/enabled", Operator.EXISTS),
    )
    assert selector.matches({"env": "staging", "stagecraft.dev/enabled": "true"})
    assert not selector.matches({"env": "staging", "tier": "batch", "stagecraft.dev/enabled": ""})
    assert not selector.matches({"env": "prod"})


def test_a_label_can_be_required_absent() -> None:
    selector = parse_selector("!legacy")
    assert selector.matches({"team": "shop"})
    assert not selector.matches({"legacy": "true"})


def test_an_empty_value_matches_an_empty_label() -> None:
    assert parse_selector("team=").matches({"team": ""})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("team=shop,", "empty requirement"),
        ("env in (prod", "unbalanced parentheses"),
        ("env in ()", "lists no values"),
        ("bad key=x", "'bad key=x'"),
        ("team=sh op", "'sh op'"),
        ("-team=shop", "'-team' in label selector '-team=shop' is not a label key"),
        ("team=" + "x" * 64, "is not a label value"),
    ],
)
def test_a_selector_that_does_not_parse_names_the_part_at_fault(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_selector(text)


def test_a_namespace_comes_into_scope_once_when_it_matches() -> None:
    scope = NamespaceScope(parse_selector("team=shop"))
    assert not scope.admits("shop")  # not seen yet
    assert scope.observe("shop", {"team": "shop"})
    assert scope.admits("shop")
    assert not scope.observe("shop", {"team": "shop", "more": "labels"})  # already in scope


def test_relabelled_namespaces_come_into_and_leave_scope() -> None:
    scope = NamespaceScope(parse_selector("team=shop"))
    assert not scope.observe("billing", {"team": "billing"})
    assert not scope.admits("billing")
    assert scope.observe("billing", {"team": "shop"})
    assert not scope.observe("billing", {})
    assert not scope.admits("billing")


def test_a_deleted_namespace_leaves_scope() -> None:
    scope = NamespaceScope(parse_selector("team=shop"))
    scope.observe("shop", {"team": "shop"})
    assert not scope.observe("shop", None)
    assert not scope.admits("shop")
