"""The ECS cluster query language of `memberOf` placement constraints.

Owns: reading an expression and matching it against one container instance, given as a
function from a name (`attribute:NAME`, `ec2InstanceId`, `instanceType`) to its value.
Must not: know about moto or placement (pure: `placement` supplies the subject).

Terms are `NAME ==|!=|=~ VALUE`, `NAME in [A, B]`, `NAME not_in [A, B]`, `NAME exists`,
joined by `and` / `&&` and `or` / `||` (`and` binds tighter); no parentheses. `=~` takes
`*` as a wildcard. A missing name matches only `!=` and `not_in`.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class ExpressionError(ValueError):
    """An expression the language cannot read."""


_TERM = re.compile(r"^\s*(\S+)\s*(==|!=|=~|not_in|in|exists)\s*(.*?)\s*$")


def _match_value(actual: str | None, operator: str, expected: str) -> bool:
    if operator == "exists":
        return actual is not None
    if actual is None:
        return operator in ("!=", "not_in")
    if operator == "==":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if operator == "=~":
        return re.fullmatch(re.escape(expected).replace(r"\*", ".*"), actual) is not None
    values = [value.strip() for value in expected.strip("[] ").split(",") if value.strip()]
    if operator == "in":
        return actual in values
    return actual not in values  # not_in


def expression_matches(expression: str, subject: Callable[[str], str | None]) -> bool:
    """The ECS cluster query language, without parentheses: `or` of `and` of terms.

    ExpressionError for a term it cannot read (the task is then not placed).
    """
    for alternative in re.split(r"\s+(?:or|\|\|)\s+", expression.strip()):
        terms = re.split(r"\s+(?:and|&&)\s+", alternative)
        satisfied = True
        for term in terms:
            match = _TERM.match(term)
            if not match:
                raise ExpressionError(f"cannot read placement expression {expression!r}")
            name, operator, expected = match.groups()
            if not _match_value(subject(name), operator, expected.strip().strip("'\"")):
                satisfied = False
                break
        if satisfied:
            return True
    return False
