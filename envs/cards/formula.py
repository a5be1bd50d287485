"""Formulas over card numbers: exact evaluation of infix token lists and a solver that finds
every formula using each number once that equals a target."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any, Sequence

def evaluate(tokens: Sequence[str]) -> Fraction | None:
    """The exact value of an infix formula of number and operator tokens, or None when it is not a
    well-formed formula (or divides by zero).

    Fractions rather than floats so that 8/(3-8/3) is exactly 24. Numbers must be separated by an
    operator: "1" "2" is malformed here, not twelve, because each card is one number.
    """
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def factor() -> Fraction:
        nonlocal pos
        tok = peek()
        pos += 1
        if tok == "(":
            value = expr()
            if peek() != ")":
                raise ValueError
            pos += 1
            return value
        if tok is not None and tok.isdigit():
            return Fraction(int(tok))
        raise ValueError

    def chain(sub: Any, ops: str) -> Fraction:
        nonlocal pos
        value = sub()
        while peek() is not None and peek() in ops:
            op = peek()
            pos += 1
            value = _apply(value, op, sub())
        return value

    def term() -> Fraction:
        return chain(factor, "*/")

    def expr() -> Fraction:
        return chain(term, "+-")

    try:
        value = expr()
    except (ValueError, ZeroDivisionError):
        return None
    return value if pos == len(tokens) else None


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b if op == "*" else a / b  # a zero divisor raises ZeroDivisionError


# An expression under construction: (value, tokens, precedence) with precedence 1 for + and -,
# 2 for * and /, 3 for a bare number or a parenthesised group.
_Expr = tuple[Fraction, tuple[str, ...], int]
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _combine(left: _Expr, op: str, right: _Expr) -> _Expr | None:
    lv, lt, lp = left
    rv, rt, rp = right
    if op == "/" and rv == 0:
        return None
    p = _PREC[op]
    # Parentheses only where precedence needs them, so solutions are short enough for the step
    # limit; the right side of - and / also needs them at equal precedence (a-(b+c), a/(b*c)).
    if lp < p:
        lt = ("(", *lt, ")")
    if rp < p or (rp == p and op in "-/"):
        rt = ("(", *rt, ")")
    return _apply(lv, op, rv), (*lt, op, *rt), p


@lru_cache(maxsize=4096)
def _expressions(values: tuple[int, ...], ops: str) -> tuple[_Expr, ...]:
    """Every formula using each of `values` (a sorted multiset) once, keyed by its tokens."""
    if len(values) == 1:
        return ((Fraction(values[0]), (str(values[0]),), 3),)
    found: dict[tuple[str, ...], _Expr] = {}
    splits = set()
    n = len(values)
    for mask in range(1, 2 ** n - 1):
        left = tuple(sorted(values[i] for i in range(n) if mask >> i & 1))
        right = tuple(sorted(values[i] for i in range(n) if not mask >> i & 1))
        if (left, right) in splits:  # equal values make many masks the same split
            continue
        splits.add((left, right))
        for a in _expressions(left, ops):
            for b in _expressions(right, ops):
                for op in ops:
                    e = _combine(a, op, b)
                    if e is not None:
                        found.setdefault(e[1], e)
    return tuple(found.values())


def solutions(values: Sequence[int], target: int, ops: str = "+-*/") -> tuple[tuple[str, ...], ...]:
    """All formulas (token tuples, shortest first) that use each value once and equal `target`.

    `ops` is the operator set, e.g. "+*" for EZPoints. Example: `solutions((3, 4), 12, "+*")`
    returns `(("3", "*", "4"), ("4", "*", "3"))`.
    """
    return _solutions(tuple(sorted(int(v) for v in values)), int(target), ops)


@lru_cache(maxsize=4096)
def _solutions(values: tuple[int, ...], target: int, ops: str) -> tuple[tuple[str, ...], ...]:
    exprs = _expressions(values, ops)
    return tuple(sorted((t for v, t, _ in exprs if v == target), key=lambda t: (len(t), t)))
