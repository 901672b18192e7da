"""Which namespaces the operator serves when they are chosen by a label selector.

kopf serves namespaces by name or glob only, so a selector (`STAGECRAFT_NAMESPACE_SELECTOR`,
`stagecraft operator --namespace-selector`) is applied here: the operator watches Namespaces,
`NamespaceScope` remembers which ones match, and `ScopedReconciler` leaves resources in the others
alone. The selector syntax is kubectl's: `team=shop`, `env!=dev`, `tier`, `!legacy`,
`env in (prod,staging)`, `env notin (dev)`, joined by commas (all must hold).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .reconcile import Reconciler

# Label keys: an optional DNS subdomain prefix and a name; values: the name rule, or empty.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY_TERM = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*)$")


class SelectorError(ValueError):
    """A label selector that does not parse; the message quotes the part at fault."""


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator is Operator.EXISTS:
            return value is not None
        if self.operator is Operator.DOES_NOT_EXIST:
            return value is None
        if self.operator in (Operator.EQUALS, Operator.IN):
            return value in self.values
        return value not in self.values  # != and notin also hold when the label is absent


@dataclass(frozen=True)
class LabelSelector:
    text: str  # as written, for messages and logs
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)


def _split_terms(text: str) -> list[str]:
    """Split at the commas between requirements, not at those inside `in (a,b)`."""
    terms, depth, current = [], 0, ""
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth not in (0, 1):
            raise SelectorError(f"unbalanced parentheses in label selector {text!r}")
        if character == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += character
    if depth:
        raise SelectorError(f"unbalanced parentheses in label selector {text!r}")
    return [*terms, current.strip()]


def _checked(selector: str, term: str, key: str, values: list[str]) -> tuple[str, frozenset[str]]:
    if not _KEY.match(key):
        raise SelectorError(
            f"{key!r} in label selector {selector!r} is not a label key "
            "([prefix/]name: letters, digits, -, _ and ., at most 63 characters in the name)"
        )
    for value in values:
        if not _VALUE.match(value):
            raise SelectorError(
                f"{value!r} in {term!r} (label selector {selector!r}) is not a label value "
                "(letters, digits, -, _ and ., at most 63 characters)"
            )
    return key, frozenset(values)


def _requirement(selector: str, term: str) -> Requirement:
    if not term:
        raise SelectorError(f"empty requirement in label selector {selector!r}")
    set_term = _SET_TERM.match(term)
    if set_term:
        values = [value.strip() for value in set_term["values"].split(",")]
        if values == [""]:
            raise SelectorError(f"{term!r} in label selector {selector!r} lists no values")
        key, checked = _checked(selector, term, set_term["key"], values)
        operator = Operator.IN if set_term["op"] == "in" else Operator.NOT_IN
        return Requirement(key, operator, checked)
    equality = _EQUALITY_TERM.match(term)
    if equality:
        key, checked = _checked(selector, term, equality["key"], [equality["value"]])
        operator = Operator.NOT_EQUALS if equality["op"] == "!=" else Operator.EQUALS
        return Requirement(key, operator, checked)
    if term.startswith("!"):
        key, _ = _checked(selector, term, term[1:].strip(), [])
        return Requirement(key, Operator.DOES_NOT_EXIST)
    key, _ = _checked(selector, term, term, [])
    return Requirement(key, Operator.EXISTS)


def parse_selector(text: str) -> LabelSelector:
    """A kubectl-style label selector; raises SelectorError naming the part that is wrong."""
    if not text.strip():
        raise SelectorError("the label selector is empty: give at least one requirement")
    requirements = tuple(_requirement(text, term) for term in _split_terms(text))
    return LabelSelector(text=text.strip(), requirements=requirements)


class NamespaceScope:
    """The namespaces a selector admits, as learnt from watching Namespaces.

    A namespace not seen yet is out of scope: when it is seen and matches, `observe` says it
    has just come into scope, and the caller reconciles the resources already in it.
    """

    def __init__(self, selector: LabelSelector) -> None:
        self.selector = selector
        self._admitted: dict[str, bool] = {}
        self._guard = threading.Lock()

    def observe(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        """Record a namespace's labels (None: it is gone); True when it has just come into
        scope (it is new and matches, or its labels changed to match)."""
        with self._guard:
            before = self._admitted.get(namespace, False)
            if labels is None:
                self._admitted.pop(namespace, None)
                return False
            now = self.selector.matches(labels)
            self._admitted[namespace] = now
            return now and not before

    def admits(self, namespace: str) -> bool:
        with self._guard:
            return self._admitted.get(namespace, False)


class ScopedReconciler(Reconciler):
    """A Reconciler that acts only on resources in namespaces its scope admits; every handler
    reaches resources through `reconcile`, so this one check keeps the operator out of the rest."""

    def __init__(self, scope: NamespaceScope, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scope = scope

    def admits(self, namespace: str) -> bool:
        return self.scope.admits(namespace)
