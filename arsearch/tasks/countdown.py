"""Countdown: a reward with no gradient surrogate, for post-training on generated text.

A prompt gives a few numbers and a target, ``"3,7,12=33:"``; the model writes an arithmetic
expression, e.g. ``"7*3+12"``. `countdown_reward` checks the expression with no model of its own:

- **1.0** — the expression is well formed, uses only the prompt's numbers, each at most as often
  as the prompt lists it, and evaluates exactly (rational arithmetic) to the target;
- **0.1** — the expression is well formed but misses: a number not allowed (or used too often), a
  wrong value, a division by zero;
- **0.0** — anything else: empty, characters other than digits, ``+ - * / ( )`` and spaces, or not
  an expression (``"3+"``, ``"(3"``, ``"07"``, a unary minus).

This is the partial credit of Qiu et al., "Evolution Strategies at Scale" (arXiv 2509.24372),
reward = 0.1 × format + answer, with their ``<think>/<answer>`` tag format replaced by the
expression's own grammar (a model of a few million parameters writes the bare expression), and
rescaled so a correct answer scores 1.0: a correct answer is always well formed, so their
{0, 0.1, 1.1} becomes {0, 0.1, 1.0} in the same order, and success is ``reward == 1``. One more
documented difference: classic Countdown (and this reward) allows using a subset of the numbers;
Qiu et al.'s grader (from TinyZero) requires each number exactly once.

`countdown` generates the prompts locally (nothing is downloaded): distinct (numbers, target)
pairs whose target a random expression over some of the numbers reaches, with that expression as
the reference (what pretraining imitates; the reward never looks at it).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

import numpy as np

CORRECT, WELL_FORMED, MALFORMED = 1.0, 0.1, 0.0
PROMPT = re.compile(r"^(\d+(?:,\d+)*)=(\d+):$")
ALLOWED = re.compile(r"^[0-9+\-*/() ]+$")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse_prompt(prompt: str) -> tuple[list[int], int]:
    """(numbers, target) of a ``"3,7,12=33:"`` prompt; a ValueError naming the prompt otherwise."""
    m = PROMPT.match(prompt.strip())
    if not m:
        raise ValueError(f"not a countdown prompt (\"3,7,12=33:\" form): {prompt!r}")
    return [int(x) for x in m.group(1).split(",")], int(m.group(2))


def _numbers(node) -> list[int]:
    """The integer literals of a parsed expression; a ValueError if it holds anything but + - * /
    of non-negative integers (no unary minus, calls, names, floats or powers)."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _numbers(node.left) + _numbers(node.right)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    raise ValueError("not an arithmetic expression of integers")


def _value(node) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    a, b = _value(node.left), _value(node.right)
    op = type(node.op)
    if op is ast.Add:
        return a + b
    if op is ast.Sub:
        return a - b
    if op is ast.Mult:
        return a * b
    return a / b          # ZeroDivisionError is the caller's: well formed, but no value


def score(expression: str, numbers: list[int], target: int) -> float:
    """The reward of one completion (see the module's docstring)."""
    text = expression.strip()
    if not text or not ALLOWED.match(text):
        return MALFORMED
    try:
        tree = ast.parse(text, mode="eval").body   # Python's grammar for + - * / and parentheses
        used = _numbers(tree)
    except (SyntaxError, ValueError, RecursionError):
        return MALFORMED
    if Counter(used) - Counter(numbers):             # a number not given, or used more often than given
        return WELL_FORMED
    try:
        return CORRECT if _value(tree) == target else WELL_FORMED
    except ZeroDivisionError:
        return WELL_FORMED


def countdown_reward(prompts: list[str], outputs: list[str], references: list[str | None]) -> list[float]:
    """`score` of each output against the numbers and target of its prompt (references unused:
    any expression that reaches the target counts, not only the generator's)."""
    return [score(o, *parse_prompt(p)) for p, o in zip(prompts, outputs)]


def _expression(rng, numbers: list[int]) -> tuple[str, Fraction]:
    """A random expression over all of `numbers` (in the given order), combined left to right or
    as (a ∘ b) ∘ (c ∘ d): its text and exact value."""
    terms = [(str(n), Fraction(n), True) for n in numbers]   # (text, value, atomic)
    while len(terms) > 1:
        i = int(rng.integers(len(terms) - 1))
        (ta, va, _), (tb, vb, atomic_b) = terms[i], terms[i + 1]
        op = "+-*/"[int(rng.integers(4))]
        if op == "/" and (vb == 0 or (va / vb).denominator != 1):
            op = "+"                                  # only exact integer divisions
        if op in "*/":    # parenthesise sums and differences under * and /
            ta = ta if _atomic_for_product(ta) else f"({ta})"
            tb = tb if _atomic_for_product(tb) and (op == "*" or atomic_b) else f"({tb})"
        elif op == "-" and not atomic_b:
            tb = f"({tb})"
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else Fraction(0)}[op]
        terms[i:i + 2] = [(f"{ta}{op}{tb}", value, False)]
    return terms[0][0], terms[0][1]


def _atomic_for_product(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in "+-":
            return False
    return True


def countdown(n: int = 2000, seed: int = 0, size: int = 3, low: int = 1, high: int = 20,
              max_target: int = 100) -> list[dict]:
    """`n` distinct Countdown prompts: `size` numbers drawn from [low, high] and a target in
    [1, max_target] reached by a random expression over 2 to `size` of them (the reference)."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(200 * n):
        if len(out) >= n:
            break
        numbers = [int(x) for x in rng.integers(low, high + 1, size=size)]
        k = int(rng.integers(2, size + 1))
        chosen = [numbers[i] for i in rng.permutation(size)[:k]]
        text, value = _expression(rng, chosen)
        if value.denominator != 1 or not 1 <= value <= max_target:
            continue
        prompt = f"{','.join(map(str, numbers))}={int(value)}:"
        if prompt in seen:
            continue
        if score(text, numbers, int(value)) != CORRECT:   # the generator's own check
            raise AssertionError(f"countdown generator wrote a wrong reference {text!r} for {prompt!r}")
        seen.add(prompt)
        out.append({"prompt": prompt, "reference": text})
    if len(out) < n:
        raise ValueError(f"countdown: only {len(out)} distinct prompts exist for size={size}, numbers in "
                         f"[{low}, {high}], targets up to {max_target}; asked for {n}")
    return out
