"""The syntax of a .rnn file as frozen dataclasses. Every node carries a `Span`."""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Span

# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Integer:
    value: int
    span: Span


@dataclass(frozen=True)
class Float:
    value: float
    span: Span


@dataclass(frozen=True)
class Boolean:
    value: bool
    span: Span


@dataclass(frozen=True)
class Name:
    """A constant's name or a bare word (`tanh`), or `_` in a shape."""

    name: str
    span: Span


@dataclass(frozen=True)
class Negation:
    operand: Expr
    count: int  # `--x` is one node with count 2, so long runs of minus signs stay flat
    span: Span


@dataclass(frozen=True)
class Chain:
    """`a + b - c` or `a * b // c`: one operator precedence level, kept flat."""

    first: Expr
    rest: tuple[tuple[str, Span, Expr], ...]  # (operator, operator span, operand)
    span: Span


@dataclass(frozen=True)
class Invalid:
    """A literal that was already reported (say, out of range); evaluates silently to nothing."""

    span: Span


Expr = Integer | Float | Boolean | Name | Negation | Chain | Invalid

# ----------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Argument:
    name: str | None  # None for a positional argument (always an error)
    name_span: Span | None
    value: Expr
    span: Span


@dataclass(frozen=True)
class Block:
    name: str | None  # None when written as a bare call: the checker names it
    name_span: Span | None
    cell: str
    cell_span: Span
    arguments: tuple[Argument, ...]
    span: Span


@dataclass(frozen=True)
class Property:
    name: str
    name_span: Span
    value: Expr
    span: Span


@dataclass(frozen=True)
class Stack:
    name: str
    name_span: Span
    properties: tuple[Property, ...]
    blocks: tuple[Block, ...]
    span: Span


@dataclass(frozen=True)
class Let:
    name: str
    name_span: Span
    value: Expr
    span: Span


@dataclass(frozen=True)
class Selector:
    value: str | int
    span: Span


@dataclass(frozen=True)
class ExpectEntry:
    key: str
    key_span: Span
    selector: Selector | None
    dims: tuple[Expr, ...]
    dims_span: Span
    span: Span


@dataclass(frozen=True)
class Expect:
    stack: str
    stack_span: Span
    entries: tuple[ExpectEntry, ...]
    span: Span


@dataclass(frozen=True)
class SpecFile:
    path: str
    lets: tuple[Let, ...]
    stacks: tuple[Stack, ...]
    expects: tuple[Expect, ...]
