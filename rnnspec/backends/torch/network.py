"""A stack with layers (language reference, section 10) as one `nn.Module` class: each
layer PyTorch's own module under the entry's name, each block as in a stack of blocks.

Inside `forward` every sequence is time-first, `[T, B, F]` (the input is turned once, and
the output back); a run of 2-D layers works on PyTorch's map `[B, C, F, T]` (or
`[B, C, T, F]` with `layout = time_first`) and is flattened channel-major when it ends.
With `lengths`, each layer that changes time maps them by its own formula (the formula
the checker derived, applied to the tensor of lengths), reads zeros at padded steps
(`-inf` before a max pool), and norms take batch statistics over valid steps only.
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.shapes import Size, Time
from rnnspec.layers import time as timing

LINE = 100

# The torch.nn module of each per-step kind, with its arguments in constructor order.
_MODULES = {
    "linear": ("nn.Linear", ("out_features",), ("bias",)),
    "layer_norm": ("nn.LayerNorm", (), ("eps", "elementwise_affine", "bias")),
    "dropout": ("nn.Dropout", ("p",), ()),
    "relu": ("nn.ReLU", (), ()),
    "tanh": ("nn.Tanh", (), ()),
    "sigmoid": ("nn.Sigmoid", (), ()),
    "gelu": ("nn.GELU", (), ()),
    "silu": ("nn.SiLU", (), ()),
    "hardtanh": ("nn.Hardtanh", ("min_val", "max_val"), ()),
    "leaky_relu": ("nn.LeakyReLU", ("negative_slope",), ()),
    "log_softmax": ("nn.LogSoftmax", (), ()),
}
_TAKES_DEVICE = ("linear", "layer_norm", "batch_norm", "embedding", "conv1d", "conv2d")


def is_network(stack: model.Stack) -> bool:
    """Whether the stack has layers or side inputs (else the stack template serves)."""
    return len(stack.entries) != len(stack.blocks) or bool(stack.side_inputs)


def _py(value) -> str:
    from rnnspec.backends.torch.printing import _py as literal

    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if value is None:
        return "None"
    return literal(value)


def _axes(layer: model.Layer, name: str):
    """A 2-D layer's pair in PyTorch's order for its map (features first unless
    `layout = time_first`)."""
    return layer.arguments[name]


def constructor(layer: model.Layer) -> str:
    """`nn.Conv2d(1, 32, (41, 11), stride=(2, 2), ...)`: the layer's module."""
    a = layer.arguments
    kind = layer.kind
    device = ", device=device, dtype=dtype" if kind in _TAKES_DEVICE else ""
    if kind in _MODULES:
        cls, positional, keywords = _MODULES[kind]
        args = [_py(layer.input_size)] if kind in ("linear", "layer_norm") else []
        args += [_py(a[name]) for name in positional]
        args += [f"{name}={_py(a[name])}" for name in keywords]
        if kind == "log_softmax":
            args = ["dim=-1"]
        return f"{cls}({', '.join(args)}{device})"
    if kind == "batch_norm":
        cls = "nn.BatchNorm2d" if layer.grid else "nn.BatchNorm1d"
        size = layer.grid[0] if layer.grid else layer.input_size
        return (f"{cls}({size}, eps={_py(a['eps'])}, momentum={_py(a['momentum'])}, "
                f"affine={_py(a['affine'])}, track_running_stats="
                f"{_py(a['track_running_stats'])}{device})")
    if kind == "embedding":
        return (f"nn.Embedding({a['num_embeddings']}, {a['embedding_dim']}, "
                f"padding_idx={_py(a['padding_idx'])}{device})")
    if kind == "conv1d":
        return (f"nn.Conv1d({layer.input_size}, {a['out_channels']}, {a['kernel_size']}, "
                f"stride={a['stride']}, padding={a['padding']}, dilation={a['dilation']}, "
                f"groups={a['groups']}, bias={_py(a['bias'])}{device})")
    if kind in ("max_pool1d", "avg_pool1d"):
        cls = "nn.MaxPool1d" if kind == "max_pool1d" else "nn.AvgPool1d"
        return (f"{cls}({a['kernel_size']}, stride={a['stride']}, padding={a['padding']}, "
                f"ceil_mode={_py(a['ceil_mode'])})")
    if kind == "conv2d":
        channels = layer.grid_in[0] if layer.grid_in else 1
        return (f"nn.Conv2d({channels}, {a['out_channels']}, {_py(_axes(layer, 'kernel_size'))}, "
                f"stride={_py(a['stride'])}, padding={_py(a['padding'])}, "
                f"dilation={_py(a['dilation'])}, groups={a['groups']}, bias={_py(a['bias'])}"
                f"{device})")
    if kind in ("max_pool2d", "avg_pool2d"):
        cls = "nn.MaxPool2d" if kind == "max_pool2d" else "nn.AvgPool2d"
        return (f"{cls}({_py(a['kernel_size'])}, stride={_py(a['stride'])}, "
                f"padding={_py(a['padding'])}, ceil_mode={_py(a['ceil_mode'])})")
    return ""  # subsample, stack_frames, pool, locked_dropout: no module


def length_formula(layer: model.Layer) -> str | None:
    """The layer's time formula over its input's lengths (`(lengths - 1) // 2 + 1`), as
    Python over a tensor; None when the layer keeps time."""
    formula = timing.own(layer.kind, layer.arguments, Time(Size.of("lengths")))
    return None if formula is None else str(formula)


# ----------------------------------------------------------------------------- the class


class _Writer:
    """The lines of one network class."""

    def __init__(self, stack: model.Stack, backend: str):
        self.stack = stack
        self.backend = backend
        self.lines: list[str] = []
        read = {part for e in stack.entries if e.source is not None for part in e.source.parts}
        self.kept = read  # entries (and inputs) whose outputs later entries read by name
        self.blocks = stack.blocks

    def line(self, text: str = "", indent: int = 8) -> None:
        from rnnspec.backends.torch.printing import _fit

        if text.endswith(("(", "[", "{")):  # the opening line of a bracket written out
            self.lines.append(" " * indent + text)
            return
        self.lines.append(" " * indent + _fit(text, indent) if text else "")

    def signature(self, name: str, arguments: str, returns: str = "") -> None:
        """`def name(arguments):` as ruff format writes it: on one line when it fits, else
        the arguments on a line of their own (or one per line) between the brackets."""
        line = f"    def {name}({arguments}){returns}:"
        if len(line) <= LINE:
            self.lines.append(line)
            return
        self.lines.append(f"    def {name}(")
        if len(arguments) + 8 <= LINE:
            self.lines.append(" " * 8 + arguments)
        else:
            self.lines.extend(" " * 8 + part.strip() + "," for part in arguments.split(", "))
        self.lines.append(f"    ){returns}:")

    def doc(self, text: str, indent: int = 8) -> None:
        """A one-paragraph docstring, wrapped within the line length."""
        import textwrap

        lines = textwrap.wrap('"""' + text + '"""', LINE - indent, break_on_hyphens=False,
                              break_long_words=False)
        if len(lines) > 1:
            lines = textwrap.wrap('"""' + text, LINE - indent, break_on_hyphens=False,
                                  break_long_words=False) + ['"""']
        self.lines.extend(" " * indent + line for line in lines)

    # ------------------------------------------------------------------- pieces

    def docstring(self) -> None:
        from rnnspec.backends.torch.printing import _py_comment, _shape

        s = self.stack
        self.lines.append(f'    """Stack `{s.name}` of {_py_comment(s.path.rsplit("/", 1)[-1])} '
                          f"(line {s.span.line}): {s.parameter_count:,} parameters.")
        self.lines.append("")
        self.lines.append(f"    input   {_shape(s.input)}")
        for side in s.side_inputs:
            self.lines.append(f"    {side.name}  {_shape(side.shape)}  (keyword argument)")
        self.lines.append(f"    output  {_shape(s.output)}")
        if s.min_input_time > 1:
            self.lines.append(f"    needs T >= {s.min_input_time}")
        self.lines.append("")
        for entry in s.entries:
            kind = entry.cell if entry.recurrent else entry.kind
            self.lines.append(f"    {entry.name}: {kind}, output {_shape(entry.output)}")
        self.lines.append('    """')
        self.lines.append("")

    def names(self, attribute: str, names: list[str]) -> None:
        """`attribute = ("a", "b")`, one name per line when it does not fit."""
        items = ", ".join(f'"{n}"' for n in names) + ("," if len(names) == 1 else "")
        line = f"    {attribute} = ({items})"
        if len(line) <= LINE:
            self.lines.append(line)
            return
        self.lines.append(f"    {attribute} = (")
        self.lines.extend(f'        "{n}",' for n in names)
        self.lines.append("    )")

    def attributes(self) -> None:
        s = self.stack
        self.line(f"input_size = {_py(s.input_size)}", 4)
        self.line(f"output_size = {_py(s.output_size)}", 4)
        self.line(f"batch_first = {_py(s.batch_first)}", 4)
        self.names("block_names", [b.name for b in self.blocks])
        self.names("entry_names", [e.name for e in s.entries])
        self.line(f"min_input_time = {s.min_input_time}", 4)
        self.line("__prepare_scriptable__ = _not_scriptable  "
                  "# torch.jit.script: a clear refusal", 4)
        self.lines.append("")

    def init(self) -> None:
        from rnnspec.backends.torch.printing import (
            _direction_keywords,
            _is_fused,
            _numbers,
            _py_names,
            _py_tuple,
            _regularisers,
            _runner,
            _state_sizes,
        )

        self.line("def __init__(self, device=None, dtype=None) -> None:", 4)
        self.line("super().__init__()")
        for entry in self.stack.entries:
            if not entry.recurrent:
                built = constructor(entry)
                if built:
                    self.line(f"self.{entry.name} = {built}")
                continue
            runner = _runner(entry, self.backend)
            if _is_fused(entry, self.backend):
                extra = "".join(f", {arg}={_py(entry.arguments[arg])}"
                                for arg in _torch_arguments(entry))
                self.line(f"self.{entry.name} = {runner}({entry.input_size}, {entry.hidden_size}, "
                          f"num_layers={entry.num_layers}{extra}, bias={_py(entry.bias)}, "
                          f"batch_first=False, dropout={_py(entry.dropout)}, "
                          f"bidirectional={_py(entry.bidirectional)}, device=device, "
                          "dtype=dtype)")
                if entry.learned_states:
                    self.line(f"_learn_states(self.{entry.name}, {_py_names(entry.states)}, "
                              "device, dtype)")
            else:
                self.line(f"self.{entry.name} = {runner}(")
                self.line("{", 12)
                for p in entry.parameters:
                    self.lines.append(f'{" " * 16}"{p.name}": {_py_tuple(p.shape)},')
                self.line("},", 12)
                keywords = [f"state_sizes={_py_tuple(_state_sizes(entry))}",
                            f"hidden_size={entry.hidden_size}",
                            f"num_layers={entry.num_layers}",
                            f"bidirectional={_py(entry.bidirectional)}",
                            f"dropout={_py(entry.dropout)}", "batch_first=False",
                            *(f"{arg}={_py(entry.arguments[arg])}"
                              for arg in _regularisers(entry)),
                            *([f"numbers={_numbers(entry)}"] if _numbers(entry) else []),
                            *_direction_keywords(entry),
                            "device=device", "dtype=dtype"]
                for keyword in keywords:
                    self.line(f"{keyword},", 12)
                self.line(")")
        self.lines.append("")


def _torch_arguments(block: model.Block) -> tuple[str, ...]:
    from rnnspec.backends.torch import torch_module

    return torch_module(block.spec).arguments


class _Forward(_Writer):
    """`forward`, `output_lengths` and `step`."""

    def _len_plan(self) -> dict[str, tuple[str, str]]:
        """Each entry's (input lengths, output lengths) variable names."""
        plan: dict[str, tuple[str, str]] = {}
        current = "lengths"
        by_name = {"input": "lengths", **{s.name: "lengths" for s in self.stack.side_inputs}}
        for entry in self.stack.entries:
            source = current
            if entry.source is not None:
                source = next((by_name[p] for p in entry.source.parts
                               if p in by_name and not self._per_sequence(p)), current)
            out = source
            if not entry.recurrent and length_formula(entry) is not None:
                out = f"lengths_{entry.name}"
            plan[entry.name] = (source, out)
            by_name[entry.name] = out
            current = out
        return plan

    def _per_sequence(self, name: str) -> bool:
        return any(s.name == name and s.per_sequence for s in self.stack.side_inputs)

    def _signature(self) -> str:
        sides = "".join(f", {s.name}: Tensor | None = None" for s in self.stack.side_inputs)
        return f"self, input: Tensor, hx=None, lengths=None, *{sides}" if sides else \
            "self, input: Tensor, hx=None, lengths=None"

    def forward(self) -> None:
        s = self.stack
        name = s.name
        self.signature("forward", self._signature())
        count = len(self.blocks)
        doc = ("`hx` and the returned states: " + (
            "the one block's, as its torch.nn module takes them" if count == 1 else
            f"one entry per recurrent block ({', '.join(b.name for b in self.blocks)})"
            if count else "none (the stack has no recurrent block): `()`"))
        self.doc(f"{doc}. `lengths`: B integers in 0..T for a padded batch; see "
                 "`output_lengths`.")
        from rnnspec.backends.torch.printing import _blocks_check, _shape

        self.line(f'x, batch = _network_input("{name}", input, {_py(s.input_size)}, '
                  f'{_py(s.batch_first)}, "{_shape(s.input)}", {_py(s.ids)})')
        self.line("if lengths is not None:")
        self.line(f'lengths = _lengths("{name}", lengths, input, batch, {_py(s.batch_first)})', 12)
        for side in s.side_inputs:
            self.line(f'{side.name} = _side_input("{name}", "{side.name}", {side.name}, '
                      f'{side.size}, x, batch, {_py(s.batch_first)}, {_py(side.per_sequence)})')
        if count == 1:
            self.line("hx = (hx,)")
        elif count:
            self.line("if hx is None:")
            self.line(f"hx = ({', '.join(['None'] * count)}{',' if count == 1 else ''})", 12)
            self.line(_blocks_check(name, [block.name for block in self.blocks]))
        for index, block in enumerate(self.blocks):
            self._check_hx(block, index)
        if "input" in self.kept:
            self.line("x_input = x")
        plan = self._len_plan()
        layout = None  # the layout of the 2-D map x is, or None for a sequence
        block_index = 0
        finals: dict[str, str] = {}
        for entry in s.entries:
            source_len, out_len = plan[entry.name]
            if entry.source is not None:
                self.line(f"x = {self._source(entry)}")
                layout = None
            inside = entry.grid is not None
            if layout is not None and not inside:
                self.line(f"x = _leave_map(x, {_py(layout == 'time_first')})")
                layout = None
            if inside and layout is None:
                layout = entry.arguments.get("layout", "features_first")
                self.line(f"x = _enter_map(x, {_py(layout == 'time_first')})")
            if entry.recurrent:
                finals[entry.name] = self._block(entry, block_index, source_len)
                block_index += 1
            else:
                self._layer(entry, layout, source_len, out_len, finals)
            if entry.name in self.kept:
                kept = f"_leave_map(x, {_py(layout == 'time_first')})" if layout else "x"
                self.line(f"out_{entry.name} = {kept}")
        if layout is not None:
            self.line(f"x = _map_output(x, {_py(layout == 'time_first')})")
        last = s.entries[-1]
        if last.time is not None:
            self.line("if lengths is not None:")
            self.line(f"x = _masked(x, {plan[last.name][1]}, 0.0, 0)", 12)
        self.line(f"x = _network_output(x, batch, {_py(s.batch_first and last.time is not None)})")
        states = [finals[b.name] for b in self.blocks]
        if count == 1:
            self.line(f"return x, {states[0]}")
        else:
            self.line(f"return x, ({', '.join(states)}{',' if count == 1 else ''})")
        self.lines.append("")

    def _check_hx(self, block: model.Block, index: int) -> None:
        from rnnspec.backends.torch.printing import _kind_check, _runtime_shape, _shape

        several = len(block.states) > 1
        self.line(f"if hx[{index}] is not None:")
        label = "hx" if len(self.blocks) == 1 else f"hx[{index}]"
        self.line(_kind_check(self.stack.name, label, f"hx[{index}]", block), 12)
        for k, (key, shape) in enumerate(block.states.items()):
            value = f"hx[{index}][{k}]" if several else f"hx[{index}]"
            self.line(f'_check_state("{self.stack.name}", "{key}[{block.name}]", {value}, '
                      f'{_runtime_shape(shape)}, batch, "{_shape(shape)}")', 12)
        self.line(f"hx = _batched_hx(hx, {index}, batch)", 12)

    def _source(self, entry) -> str:
        source = entry.source
        reads = []
        for part in source.parts:
            if part == "input":
                reads.append("x_input")
            elif any(side.name == part for side in self.stack.side_inputs):
                reads.append(part)
            else:
                reads.append(f"out_{part}")
        if source.mode == "name":
            return reads[0]
        timed = next((r for r, p in zip(reads, source.parts) if not self._per_sequence(p)),
                     None)
        parts = [f"_over_time({r}, {timed})" if self._per_sequence(p) and timed else r
                 for r, p in zip(reads, source.parts)]
        self.line(f"parts = [{', '.join(parts)}]")
        return "sum(parts[1:], parts[0])" if source.mode == "sum" else "torch.cat(parts, -1)"

    def _block(self, block: model.Block, index: int, lengths: str) -> str:
        from rnnspec.backends.torch.printing import _is_fused

        state = f"state_{block.name}"
        if block.residual:
            self.line("before = x")
        call = "_fused(self." if _is_fused(block, self.backend) else "("
        if call == "(":
            self.line(f"x, {state} = self.{block.name}(x, hx[{index}], {lengths})")
        else:
            reverse = ", reverse=True" if block.reverse else ""
            self.line(f"x, {state} = _fused(self.{block.name}, x, hx[{index}], {lengths}"
                      f"{reverse})")
        if block.merge is not None:
            self.line(f'x = _merge(x, "{block.merge}")')
        if block.residual:
            self.line(f"x = _residual(x, before, {lengths}, False)")
        self.line(f"{state} = _unbatched_state({state}, batch)")
        return state

    def _layer(self, layer: model.Layer, layout, source_len: str, out_len: str,
               finals: dict) -> None:
        kind, a = layer.kind, layer.arguments
        attr = f"self.{layer.name}"
        axis = ("2" if layout == "time_first" else "-1") if layout else "0"
        formula = length_formula(layer)
        if formula is not None:
            fill = "-math.inf" if kind.startswith("max_pool") else "0.0"
            self.line(f"if {source_len} is not None:")
            self.line(f"x = _masked(x, {source_len}, {fill}, {axis})", 12)
        ceil_average = kind.startswith("avg_pool") and a["ceil_mode"]
        if ceil_average:
            self.line(f"steps = x.shape[{axis}]")
        if kind in ("conv1d", "max_pool1d", "avg_pool1d"):
            self.line(f"x = {attr}(x.permute(1, 2, 0)).permute(2, 0, 1)")
        elif kind == "subsample":
            self.line(f"x = x[:: {a['factor']}]")
        elif kind == "stack_frames":
            self.line(f"x = _stack_frames(x, {a['factor']})")
        elif kind == "batch_norm":
            if layer.time is None:
                self.line(f"x = {attr}(x)")
            elif layout:
                self.line(f"x = _norm_map({attr}, x, {source_len}, {axis})")
            else:
                self.line(f"x = _norm_steps({attr}, x, {source_len})")
        elif kind == "locked_dropout":
            if layer.time is None:
                self.line(f"x = nn.functional.dropout(x, {_py(a['p'])}, self.training)")
            else:
                self.line(f"x = _locked_dropout(x, {_py(a['p'])}, self.training, {axis})")
        elif kind == "pool":
            if a["mode"] == "final":
                block = next(b for b in reversed(self.blocks) if b.name in finals)
                self.line(f"x = _final_states(state_{block.name}, "
                          f"{_py(block.bidirectional)}, batch)")
            else:
                self.line(f'x = _pool(x, "{a["mode"]}", {source_len})')
        else:
            self.line(f"x = {attr}(x)")
        if ceil_average:
            t = 0 if a.get("layout") == "time_first" or kind == "avg_pool1d" else 1
            pick = (lambda v: v) if kind == "avg_pool1d" else (lambda v: v[t])
            self.line(f"if {source_len} is not None:")
            self.line(f"x = _avg_divisors(x, {source_len}, steps, {pick(a['kernel_size'])}, "
                      f"{pick(a['stride'])}, {pick(a['padding'])}, {axis})", 12)
        if formula is not None:
            self.line(f"{out_len} = None")
            self.line(f"if {source_len} is not None:")
            text = formula.replace("lengths", source_len)
            self.line(f'{out_len} = _shorter("{self.stack.name}", "{layer.name}", '
                      f"{source_len}, {text})", 12)
            self.line(f"x = _masked(x, {out_len}, 0.0, {axis})", 12)

    def output_lengths(self) -> None:
        s = self.stack
        self.signature("output_lengths", "self, lengths", " -> Tensor")
        self.doc("The lengths of the output's sequences for input lengths `lengths`, by the "
                 "time formulas the checker derived; a length of 0 stays 0.")
        if s.entries[-1].time is None:
            pooled = next(e for e in s.entries if not e.recurrent and e.kind == "pool")
            self.line(f'raise TypeError("{s.name}: the output has no time: `{pooled.name}` '
                      'pools it")')
            self.lines.append("")
            return
        self.line(f'lengths = _as_lengths("{s.name}", lengths)')
        plan = self._len_plan()
        read = {source for source, _ in plan.values()} | {plan[s.entries[-1].name][1]}
        for entry in s.entries:
            source_len, out_len = plan[entry.name]
            formula = None if entry.recurrent else length_formula(entry)
            if formula is not None:
                text = formula.replace("lengths", source_len)
                # a branch nothing reads from is still checked, as forward checks it
                target = f"{out_len} = " if out_len in read else ""
                self.line(f'{target}_shorter("{s.name}", "{entry.name}", {source_len}, '
                          f"{text})")
        self.line(f"return {plan[s.entries[-1].name][1]}")
        self.lines.append("")

    def step(self) -> None:
        s = self.stack
        sides = "".join(f", {side.name}: Tensor | None = None" for side in s.side_inputs)
        self.signature("step", f"self, input: Tensor, hx=None{', *' + sides if sides else ''}")
        self.doc("One time step, equal to `forward` on a sequence of length 1"
                 + (" (a side input over time is given for this step: `[B, size]`)."
                    if any(not side.per_sequence for side in s.side_inputs) else "."))
        stopper = next((e for e in s.entries if (not e.recurrent and (
            e.changes_time or e.kind == "pool")) or (e.recurrent and (
                e.bidirectional or e.reverse))), None)
        if stopper is not None:
            runs = "is bidirectional" if stopper.recurrent and stopper.bidirectional else \
                "runs in reverse"
            why = f"`{stopper.name}` " + (runs if stopper.recurrent else
                                          "changes time" if stopper.kind != "pool"
                                          else "pools time")
            self.line(f'raise TypeError("{s.name}: no step, because {why}; call forward")')
            self.lines.append("")
            return
        features = "None" if s.ids else str(s.input_size)
        self.line(f"sequence, time = _network_step(input, {features}, {_py(s.batch_first)})")
        passed = []
        for side in s.side_inputs:
            value = side.name if side.per_sequence else f"_step_input({side.name}, time)"
            passed.append(f"{side.name}={value}")
        extra = "".join(f", {p}" for p in passed)
        self.line(f"output, states = self.forward(sequence, hx{extra})")
        self.line("return output.squeeze(time), states")
        self.lines.append("")

    def quantize_dynamic(self) -> None:
        self.signature("quantize_dynamic", "self", f" -> {self.stack.name}")
        self.doc("A copy for inference on the CPU with int8 weights and activations quantised "
                 "at each call (the model itself is left as it is): every recurrent block's "
                 "weight matrices, written out or torch.nn's LSTM and GRU, and every "
                 "nn.Linear. Its state dict keeps its keys where a block is written out; it "
                 "runs eagerly.")
        self.line("return _quantize_dynamic(self)")
        self.lines.append("")


def network_source(stack: model.Stack, backend: str) -> str:
    """The class of a stack with layers."""
    writer = _Forward(stack, backend)
    writer.lines.append(f"class {stack.name}(nn.Module):")
    writer.docstring()
    writer.attributes()
    writer.init()
    writer.forward()
    writer.output_lengths()
    writer.step()
    writer.quantize_dynamic()
    while writer.lines and not writer.lines[-1]:
        writer.lines.pop()
    return "\n".join(writer.lines) + "\n"
