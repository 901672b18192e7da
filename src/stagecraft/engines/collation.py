"""JavaScript `localeCompare` order (ICU's root collation, Node.js's default) for file names.

Prisma 6 sorts migration folders with `a.localeCompare(b)`. For printable ASCII, ICU compares
in levels: first the characters' base order (punctuation, then digits, then letters with case
ignored), then case (lowercase first). That is reproduced exactly here and checked against
Node.js by the tests; other characters get a stable but approximate order, and callers treat a
name containing them as one whose place Stagecraft cannot be sure of.
"""

from __future__ import annotations

# ICU root collation of printable ASCII, case folded: what `localeCompare` sorts by first.
_BASE_ORDER = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz"
_BASE_WEIGHT = {char: weight for weight, char in enumerate(_BASE_ORDER)}
_UNKNOWN_BASE = len(_BASE_ORDER)

CollationKey = tuple[tuple[int, ...], tuple[int, ...], bytes]


def exactly_collated(name: str) -> bool:
    """Whether `collation_key` reproduces Node.js exactly for this name (printable ASCII)."""
    return all(char.isascii() and char.lower() in _BASE_WEIGHT for char in name)


def collation_key(name: str) -> CollationKey:
    """Sort key giving the order of JavaScript `localeCompare` (exact for printable ASCII)."""
    base = tuple(_base_weight(char) for char in name)
    case = tuple(1 if char.isupper() else 0 for char in name)
    # Names equal at both levels differ in bytes only; the bytes keep the order total.
    return base, case, name.encode("utf-8", errors="surrogateescape")


def _base_weight(char: str) -> int:
    if char.isascii() and char.lower() in _BASE_WEIGHT:
        return _BASE_WEIGHT[char.lower()]
    return _UNKNOWN_BASE + ord(char)
