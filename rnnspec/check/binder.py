"""One argument binder for every call-like thing of the language: the properties of a
stack and the arguments of a block.

`bind` only maps what was written (actuals) to the rules they set (formals), in the manner
of mypy's `map_actuals_to_formals`; evaluating values and reporting is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from rnnspec.cells.registry import ArgumentRule
from rnnspec.records import Record


class Binding(Record):
    formals: dict[str, object]  # rule name -> the actual (ast.Argument or ast.Property) setting it
    positions: dict[str, int]  # rule name -> position, for those set positionally
    unknown: list  # actuals naming no rule
    duplicates: list  # (actual, the earlier actual of the same rule)
    misplaced: list  # positional actuals that cannot bind: after a keyword, too many, not allowed


def bind(actuals: Sequence, rules: Sequence[ArgumentRule], *, positional: bool) -> Binding:
    """Map `actuals` (each with `.name`, None when positional) to `rules`, in order.

    Positional actuals take the rules in their order, as Python binds a call; only where
    `positional` is set, never after a keyword actual, and never a `keyword_only` rule.
    """
    by_name = {rule.name: rule for rule in rules}
    ordered = [rule for rule in rules if not rule.keyword_only]
    binding = Binding({}, {}, [], [], [])
    seen_keyword = False
    index = 0
    for actual in actuals:
        if actual.name is None:
            if not positional or seen_keyword or index >= len(ordered):
                binding.misplaced.append(actual)
                continue
            name = ordered[index].name
            binding.positions[name] = index
            index += 1
        else:
            seen_keyword = True
            name = actual.name
            if name not in by_name:
                binding.unknown.append(actual)
                continue
        if name in binding.formals:
            binding.duplicates.append((actual, binding.formals[name]))
            continue
        binding.formals[name] = actual
    return binding
