"""Safe evaluation of small arithmetic expressions (the countdown reward), without ``eval``.

Only number literals, ``+ - * /`` (binary and unary) and parentheses are accepted. The expression's length,
its number of syntax nodes and every literal and intermediate value are bounded, so hostile input such as
``9**9**9``, ``().__class__``, names, calls or a 10,000-digit literal is refused in microseconds.
Written by hand because no kept library evaluates arithmetic without ``eval``.
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass

MAX_CHARS = 512       # a countdown equation is a few dozen characters
MAX_NODES = 128       # syntax nodes in the parsed expression
MAX_ABS_VALUE = 1e15  # literals and intermediate results; below 2**53 so floats stay exact for integers

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, *_BINARY, *_UNARY)


class UnsafeExpression(ValueError):
    """The expression is not plain bounded arithmetic."""


@dataclass(frozen=True)
class Evaluated:
    value: float
    numbers: tuple[float, ...]  # the literals, in order of appearance


def _check_number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsafeExpression(f"not a number: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsafeExpression("non-finite value")
    if abs(value) > MAX_ABS_VALUE:
        raise UnsafeExpression("value out of bounds")
    return value


def parse(expr: str) -> ast.Expression:
    """Parse and vet ``expr``; UnsafeExpression if it is anything but bounded arithmetic."""
    if not isinstance(expr, str):
        raise UnsafeExpression("not a string")
    if len(expr) > MAX_CHARS:
        raise UnsafeExpression(f"longer than {MAX_CHARS} characters")
    # Cheap character screen before the parser sees it: digits, operators, parens, dot, exponent marks, space.
    if any(ch not in "0123456789+-*/(). \t\neE_" for ch in expr):
        raise UnsafeExpression("characters other than numbers, + - * / and parentheses")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpression(f"not an expression: {exc}") from None
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise UnsafeExpression(f"more than {MAX_NODES} syntax nodes")
        if not isinstance(node, _ALLOWED_NODES):
            raise UnsafeExpression(f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant):
            _check_number(node.value)
    return tree


def _eval(node: ast.AST, numbers: list[float]) -> float | int:
    if isinstance(node, ast.Constant):
        numbers.append(node.value)
        return node.value
    if isinstance(node, ast.UnaryOp):
        return _check_number(_UNARY[type(node.op)](_eval(node.operand, numbers)))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, numbers), _eval(node.right, numbers)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpression("division by zero")
        return _check_number(_BINARY[type(node.op)](left, right))
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def evaluate(expr: str) -> Evaluated:
    """The value of ``expr`` and the number literals it uses; UnsafeExpression when refused."""
    tree = parse(expr)
    numbers: list[float] = []
    value = _eval(tree.body, numbers)  # depth <= MAX_NODES, far below the recursion limit
    return Evaluated(float(value), tuple(numbers))
