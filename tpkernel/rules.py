r"""Rule tables: how every interpretation of a program is organised.

A tensor program is data (:mod:`tpkernel.ir`); each *interpretation* — validation, the
backward transformation, the limit (Master Theorem), the symbolic formulas, finite width,
the listing, the drawing, the pruning amplitudes — is a table with one rule per node class,
in the style of JAX's per-primitive rule tables.  Adding a node kind means registering one
rule in each table; :func:`tables` lists them all, and a test asserts that every table
covers every node class of :data:`tpkernel.ir.NODE_CLASSES`.

A node whose class has no rule in an interpretation is a :class:`~tpkernel.errors.MissingRuleError`
naming the node, its class and the interpretation — never a silent fallback to another rule.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .errors import MissingRuleError

#: every rule table, by interpretation name (filled by :class:`RuleTable`)
_TABLES: dict[str, "RuleTable"] = {}


class RuleTable:
    """A dict node class → rule for one interpretation.

    ``table[node]`` (or ``table.rule(node)``) returns the rule for the node's class (looking
    up the class's bases, so a subclass inherits a rule unless it registers its own);
    ``table.register(cls)`` is a decorator.  ``exempt`` lists node classes the interpretation
    deliberately has no rule for, with the reason (they never reach it), so that coverage
    is explicit rather than accidental.
    """

    def __init__(self, interpretation: str, rules: dict[type, Callable] | None = None,
                 exempt: dict[type, str] | None = None) -> None:
        if interpretation in _TABLES:
            raise ValueError(f"a rule table for {interpretation!r} exists already")
        self.interpretation = interpretation
        self.rules: dict[type, Callable] = dict(rules or {})
        self.exempt: dict[type, str] = dict(exempt or {})
        _TABLES[interpretation] = self

    def register(self, cls: type, rule: Callable | None = None):
        """Register ``rule`` for node class ``cls`` (as a decorator when ``rule`` is None)."""
        if rule is not None:
            self.rules[cls] = rule
            self.exempt.pop(cls, None)
            return rule

        def deco(fn: Callable) -> Callable:
            return self.register(cls, fn)
        return deco

    def exempt_class(self, cls: type, why: str) -> None:
        self.exempt[cls] = why

    def find(self, cls: type) -> Callable | None:
        for k in cls.__mro__:
            if k in self.rules:
                return self.rules[k]
        return None

    def rule(self, node: Any) -> Callable:
        """The rule for ``node`` (an instance), or a MissingRuleError naming it."""
        fn = self.find(type(node))
        if fn is None:
            name = getattr(node, "name", node)
            raise MissingRuleError(f"{type(node).__name__} node {name!r}: the {self.interpretation} interpretation "
                                   f"has no rule for {type(node).__name__} (register one in its rule table)")
        return fn

    __getitem__ = rule

    def covers(self, cls: type) -> bool:
        return self.find(cls) is not None or any(k in self.exempt for k in cls.__mro__)

    def __contains__(self, cls: type) -> bool:
        return self.covers(cls)

    def __repr__(self) -> str:
        return f"<RuleTable {self.interpretation}: {', '.join(c.__name__ for c in self.rules)}>"


def tables() -> dict[str, RuleTable]:
    """Every interpretation's rule table (importing the modules that define them)."""
    from . import backward, data, draw, ir, listing, symbolic  # noqa: F401
    from .finite import network  # noqa: F401
    from .limit import theorem  # noqa: F401
    from .pruning import scaling  # noqa: F401
    return dict(_TABLES)


def uncovered() -> Iterator[tuple[str, type]]:
    """(interpretation, node class) pairs that no rule covers: empty in a consistent library."""
    from . import ir
    for name, table in tables().items():
        for cls in ir.NODE_CLASSES:
            if not table.covers(cls):
                yield name, cls
