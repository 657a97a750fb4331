"""`expect` blocks: shape assertions compared with the derived shapes, with hints for the
mistakes people make most with PyTorch's recurrent modules."""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.registry import state_keys
from rnnspec.cells.shapes import bind_dims, format_shape, without_batch
from rnnspec.check.evaluate import POISON, Evaluator
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, error
from rnnspec.language.names import suggest

ANY = None  # a dimension written `_`, or one whose expression already failed


class ExpectationChecker:
    def __init__(self, values: Evaluator, stacks: dict[str, model.Stack],
                 stack_asts: dict[str, ast.Stack], problems: Sink, cells: dict):
        self.values = values
        self.stacks = stacks
        self.stack_asts = stack_asts
        self.problems = problems
        # state key -> its state's name: `h0` and `h_n` -> `h`, for every known cell
        self.state_of: dict[str, str] = {
            key: state.name for cell in cells.values() if cell is not None
            for state in cell.states for key in state_keys(state.name)}
        self.keys = ("input", "output", *self.state_of)
        self.owners: dict[str, list[str]] = {}  # state -> the cells that have it
        for cell in cells.values():
            for state in cell.states if cell is not None else ():
                self.owners.setdefault(state.name, []).append(cell.name)

    def check(self, expect: ast.Expect) -> model.ExpectationResult:
        with self.problems.watch() as step:
            bound = self._check(expect)
        ok = not step.failed and expect.stack in self.stacks
        bindings = {key: value for key, value in (bound or {}).items() if key in ("T", "B")}
        return model.ExpectationResult(expect.stack, expect.span.path, expect.span.line, ok,
                                       bindings)

    def _check(self, expect: ast.Expect) -> dict | None:
        """Checks every entry; returns what `input` bound (None when it bound nothing)."""
        if expect.stack not in self.stack_asts:
            self.problems.append(
                error("E040", f"no stack named `{expect.stack}`", expect.stack_span,
                      help=suggest(expect.stack, self.stack_asts))
            )
            return
        stack = self.stacks.get(expect.stack)  # None when the stack itself has errors
        entries = self._entries(expect, stack)
        if "input" not in entries:
            self.problems.append(
                error("E042", f"expectation for `{expect.stack}` has no `input`",
                      expect.stack_span,
                      help="add `input = [T, B, features]` (or `[T, features]` unbatched)")
            )
            return
        if stack is None:
            return
        entry, dims, _ = entries.pop("input")
        bound = self._input(stack, entry, dims)
        if bound is None:
            return None
        bound["input"] = dims
        for entry, dims, block in entries.values():
            self._compare(stack, entry, dims, block, bound, entries)
        return bound

    def _entries(self, expect: ast.Expect, stack):
        """Entries by (key, block), each with its evaluated dims; reports bad keys."""
        entries: dict = {}
        firsts: dict = {}
        for entry in expect.entries:
            if entry.key not in self.keys:
                self.problems.append(
                    error("E041", f"unknown expectation key `{entry.key}`", entry.key_span,
                          help=suggest(entry.key, self.keys)
                          or "the keys are " + ", ".join(f"`{k}`" for k in self.keys))
                )
                continue
            block = self._selected_block(entry, stack)
            if block is POISON:
                continue
            ident = (entry.key, block.name if block is not None else None)
            if ident in firsts:
                self.problems.append(
                    error("E011", f"`{entry.key}` is expected twice", entry.key_span,
                          notes=[Note("first expected here", firsts[ident])])
                )
                continue
            firsts[ident] = entry.key_span
            entries["input" if entry.key == "input" else ident] = (entry, self._dims(entry),
                                                                   block)
        return entries

    def _dims(self, entry: ast.ExpectEntry) -> list:
        dims = []
        for expr in entry.dims:
            if isinstance(expr, ast.Name) and expr.name == "_":
                dims.append(ANY)
                continue
            value = self.values.typed(expr, "int", "a dimension")
            value = self.values.in_range(value, expr.span, "a dimension", 1)
            dims.append(ANY if value is POISON else value)
        return dims

    def _selected_block(self, entry: ast.ExpectEntry, stack: model.Stack | None):
        """The block a key is about (a state's block, or the block of `output[block]`);
        None for the stack as a whole; POISON after a diagnostic."""
        names = [e.name for e in stack.entries] if stack is not None else []
        if entry.selector is None:
            # a state without a block: the stack's one recurrent entry
            stateful = stack.blocks if stack is not None else ()
            if entry.key in self.state_of and len(stateful) > 1:
                listed = ", ".join(f"`{entry.key}[{b.name}]`" for b in stateful)
                self.problems.append(
                    error("E045", f"`{entry.key}` needs a block: stack `{stack.name}` has "
                          f"{len(stateful)}", entry.key_span, help=f"write one of {listed}")
                )
                return POISON
            if entry.key in self.state_of and stateful:
                return self._state_block(entry, stateful[0])
            return None
        if entry.key == "input":
            self.problems.append(
                error("E045", "`input` is the stack's input and takes no block",
                      entry.selector.span, help="write `input = [...]`")
            )
            return POISON
        if stack is None:
            return POISON
        selector = entry.selector.value
        if isinstance(selector, int):
            if selector >= len(stack.entries):
                self.problems.append(
                    error("E045", f"stack `{stack.name}` has no block {selector}",
                          entry.selector.span,
                          help=f"blocks are numbered 0 to {len(stack.entries) - 1}")
                )
                return POISON
            return self._state_block(entry, stack.entries[selector])
        for block in stack.entries:
            if block.name == selector:
                return self._state_block(entry, block)
        self.problems.append(
            error("E045", f"stack `{stack.name}` has no block `{selector}`", entry.selector.span,
                  help=suggest(selector, names)
                  or "its blocks are " + ", ".join(f"`{n}`" for n in names))
        )
        return POISON

    def _state_block(self, entry: ast.ExpectEntry, block: model.Entry):
        state = self.state_of.get(entry.key)
        if state is not None and not block.recurrent:
            self.problems.append(
                error("E046", f"layer `{block.name}` has no states: `{entry.key}` is a "
                      "block's", entry.key_span, help="name a recurrent block")
            )
            return POISON
        if state is not None and state not in block.state_names:
            what = "cell state" if state == "c" else "state"
            first, final = state_keys(state)
            self.problems.append(
                error("E046", f"block `{block.name}` is a `{block.cell}`, which has no {what} "
                      f"`{entry.key}`", entry.key_span,
                      help=(f"only {' and '.join(self.owners[state])} blocks have `{first}` "
                            f"and `{final}`") if block.spec.step is None else
                      f"the states of `{block.cell}` are " + ", ".join(
                          f"`{k}`" for s in block.state_names for k in state_keys(s)))
            )
            return POISON
        return block

    # ------------------------------------------------------------------- input

    def _input(self, stack: model.Stack, entry: ast.ExpectEntry, dims: list):
        """Binds T and B from `input`; None when its rank leaves them unknown. A wrong
        feature count or a too short T is reported and the rest still bound, so that every
        other key's independent mismatches are reported too."""
        if stack.ids:  # integer ids: `[T, B]` (`[B, T]`), or `[T]` unbatched
            if len(dims) not in (1, 2):
                written = "[B, T]" if stack.batch_first else "[T, B]"
                self.problems.append(
                    error("E043", f"`input` has {len(dims)} dimensions, expected 2 "
                          f"({written}: the token ids `embedding` reads) or 1 when unbatched "
                          "([T])", entry.dims_span))
                return None
            if len(dims) == 1:
                return self._time_fits(stack, entry, {"T": dims[0], "batched": False})
            time, batch = (dims[1], dims[0]) if stack.batch_first else (dims[0], dims[1])
            return self._time_fits(stack, entry, {"T": time, "B": batch, "batched": True})
        if len(dims) not in (2, 3):
            written = "[B, T, " if stack.batch_first else "[T, B, "
            self.problems.append(
                error("E043", f"`input` has {len(dims)} dimensions, expected 3 "
                      f"({written}{stack.input_size}]) or 2 when unbatched "
                      f"([T, {stack.input_size}])", entry.dims_span)
            )
            return None
        features = dims[-1]
        if features is not ANY and features != stack.input_size:
            self.problems.append(
                error("E044", f"`input` has {features} features, but stack `{stack.name}` "
                      f"takes {stack.input_size}", entry.dims[-1].span,
                      notes=[Note(f"`input_size` is {stack.input_size} here",
                                  stack.input_size_span)],
                      help="the last dimension of `input` must equal the stack's `input_size`")
            )  # T and B are still known: the other keys are compared with them
        if len(dims) == 2:
            return self._time_fits(stack, entry, {"T": dims[0], "batched": False})
        time, batch = (dims[1], dims[0]) if stack.batch_first else (dims[0], dims[1])
        return self._time_fits(stack, entry, {"T": time, "B": batch, "batched": True})

    def _time_fits(self, stack: model.Stack, entry: ast.ExpectEntry, bound: dict):
        """`bound`; after an error at the first entry whose time the bound `T` makes shorter
        than one step, marked so that the other keys' time axes are compared as any."""
        length = bound["T"]
        if length is ANY or stack.min_input_time <= length:
            return bound
        for item in stack.entries:
            if item.time is not None and item.time.evaluate(length) < 1:
                self.problems.append(
                    error("E107", f"with T = {length}, `{item.name}` has time {item.time} = "
                          f"{item.time.evaluate(length)}: shorter than one step", item.span,
                          notes=[Note(f"`input` binds T = {length} here", entry.dims_span)],
                          help=f"stack `{stack.name}` needs T >= {stack.min_input_time}"))
                return dict(bound, time_fits=False)
        return bound

    # ------------------------------------------------------------------- other keys

    def _expected(self, stack: model.Stack, entry: ast.ExpectEntry, block, bound) -> list:
        if entry.key == "output":
            shape = (block or stack.entries[-1]).output
        else:
            shape = block.states[state_keys(self.state_of[entry.key])[0]]
        if not bound["batched"]:
            shape = without_batch(shape)
        if not bound.get("time_fits", True):  # E107 reported: no time axis to compare
            return bind_dims(shape, dict(bound, T=ANY))
        return bind_dims(shape, bound)

    def _compare(self, stack: model.Stack, entry: ast.ExpectEntry, found: list,
                 block: model.Block | None, bound, entries: dict) -> None:
        expected = self._expected(stack, entry, block, bound)
        name = entry.key + (f"[{entry.selector.value}]" if entry.selector else "")
        if len(found) != len(expected):
            self.problems.append(
                error("E043", f"`{name}` has {len(found)} dimensions, expected "
                      f"{len(expected)}: {format_shape(expected)}", entry.dims_span)
            )
            return
        wrong = [i for i, (e, f) in enumerate(zip(expected, found, strict=True))
                 if e is not ANY and f is not ANY and e != f]
        if not wrong:
            return
        span = entry.dims[wrong[0]].span
        last = entry.dims[wrong[-1]].span
        if last.line == span.line:
            span = span.to(last)
        state = self.state_of.get(entry.key)
        layout = _layout(stack, bound, found, wrong) if state is not None else None
        notes = []
        if layout is not None:
            hint, written = layout
            notes = [Note(f"`output` is written {written} too", other.dims_span)
                     for other, dims, _ in entries.values()
                     if other.key == "output" and dims[:2] == bound["input"][:2]]
        else:
            owner = block or stack.entries[-1]
            hint = _hint(stack, owner, state, expected, found, wrong) if owner.recurrent else None
        self.problems.append(
            error("E044", f"`{name}` of `{stack.name}` is {format_shape(expected)}, "
                  f"not {format_shape(found)}", span, notes=notes[:1], help=hint)
        )


def _layout(stack: model.Stack, bound, found, wrong) -> tuple[str, str] | None:
    """A `help:` when a state's batch is the dimension of `input` that the stack's layout
    takes for time: the input was written batch-first in a stack that is not (or the
    other way round)."""
    if not bound["batched"] or 1 not in wrong or found[1] is ANY:
        return None
    first, second = bound["input"][:2]
    if not stack.batch_first and found[1] == first and found[1] != second:
        return (f"`input` looks batch-first ([B, T, features], B = {first}), but stack "
                f"`{stack.name}` is not: set `batch_first = true` in stack `{stack.name}`",
                "batch-first")
    if stack.batch_first and found[1] == second and found[1] != first:
        return (f"`input` looks time-first ([T, B, features], B = {second}), but stack "
                f"`{stack.name}` is `batch_first`: write `input` as [B, T, features]",
                "time-first")
    return None


def _hint(stack: model.Stack, block: model.Block, state: str | None, expected, found,
          wrong) -> str | None:
    """A `help:` for the mistakes that explain a mismatch, most specific first. `state` is
    the state a key is about (`h`, `c`), None for `output`."""
    batched = len(expected) == 3
    swapped = (batched and sorted(wrong) == [0, 1] and found[0] == expected[1]
               and found[1] == expected[0])
    last = len(expected) - 1
    if state is not None:
        carried = state != block.state_names[0]  # not the first state: lstm's `c`
        if swapped:
            if stack.batch_first:
                return ("`batch_first` applies to input and output only: states stay "
                        "[num_layers * num_directions, batch, features]")
            return ("the batch and layer axes are swapped: states are "
                    "[num_layers * num_directions, batch, features]")
        if 0 in wrong and found[0] is not ANY:
            if block.bidirectional and found[0] * 2 == expected[0]:
                return (f"block `{block.name}` is bidirectional: the first dimension is "
                        f"num_layers * 2 = {expected[0]}")
            if found[0] == block.num_directions and block.num_layers > 1:
                return (f"the first dimension counts layers too: num_layers * num_directions = "
                        f"{expected[0]}")
        if last in wrong and block.proj_size:
            if carried and found[last] == block.proj_size:
                return (f"`{state}` keeps `hidden_size` ({block.hidden_size}); only "
                        f"`{block.state_names[0]}` is projected to `proj_size` "
                        f"({block.proj_size})")
            if not carried and found[last] == block.hidden_size:
                return (f"`{state}` is projected: its last dimension is `proj_size` "
                        f"({block.proj_size}), not `hidden_size`")
        return None
    if swapped:
        if stack.batch_first:
            return "the stack is `batch_first`: its output is [batch, time, features]"
        return ("the stack is not `batch_first`: its output is [time, batch, features]; "
                "set `batch_first = true` for [batch, time, features]")
    if last in wrong and found[last] is not ANY:
        if block.bidirectional and found[last] * 2 == expected[last]:
            return (f"block `{block.name}` is bidirectional: its output joins both "
                    f"directions, 2 * {block.state_size} = {expected[last]} features")
        if block.proj_size and found[last] == block.hidden_size * block.num_directions:
            return (f"block `{block.name}` projects its output to `proj_size` "
                    f"({block.proj_size})")
    return None


def check_expectations(expects, values, stacks, stack_asts, problems, cells) -> list:
    checker = ExpectationChecker(values, stacks, stack_asts, problems, cells)
    return [checker.check(expect) for expect in expects]
