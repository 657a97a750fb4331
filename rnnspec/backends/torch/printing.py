"""How the torch backend prints values, shapes and names into generated code (Jinja
filters and the network writer share them), and which class runs each block."""

from __future__ import annotations

import keyword
import math
import re

from rnnspec import model
from rnnspec.backends.torch import FUSED, torch_module

LINE_LENGTH = 100  # the project's ruff line length, which generated code keeps too


def _ident(name: str) -> str:
    """A checked identifier; anything else is a bug upstream, never pasted into code."""
    if not (isinstance(name, str) and name.isascii() and name.isidentifier()
            and not keyword.iskeyword(name)):
        raise ValueError(f"refusing to put {name!r} into generated code as a name")
    return name


def _py(value) -> str:
    """A Python literal for a value of the model: bool, int, finite float, or a cell word."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return repr(float(value))
    if isinstance(value, str) and value in _word_values():
        return f'"{value}"'
    raise ValueError(f"refusing to put {value!r} into generated code as a value")


def _py_tuple(shape) -> str:
    return "(" + ", ".join(_py(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _runtime_shape(shape) -> str:
    """A state shape for `_check_state`: the batch axis as None, sizes as ints."""
    return "(" + ", ".join("None" if d == "B" else _py(d) for d in shape) + ")"


def _kind_check(stack: str, label: str, value: str, block: model.Block) -> str:
    """The `_check_kind` call for one block's states in `hx` (`value`, a Python expression):
    a tensor for one state, a tuple of them for several, named as the cell names them."""
    keys = ", ".join(f'"{_ident(key)}"' for key in block.states)
    one = len(block.states) == 1
    what = f"the state{'' if one else 's'} of {_ident(block.cell)} block `{_ident(block.name)}`"
    return f'_check_kind("{stack}", "{label}", {value}, ({keys}{"," if one else ""}), "{what}")'


def _blocks_check(stack: str, names) -> str:
    """The `_check_kind` call for the `hx` of a stack of several blocks: one entry each."""
    keys = ", ".join(f'"{_ident(name)}"' for name in names)
    return f'_check_kind("{stack}", "hx", hx, ({keys}), "one entry per block")'


def _shape(shape) -> str:
    from rnnspec.cells.shapes import Time

    return "[" + ", ".join(str(d) if d in ("T", "B") or isinstance(d, Time) else _py(d)
                           for d in shape) + "]"


def _py_comment(text: str) -> str:
    """A file name made safe for a comment or a docstring."""
    return re.sub(r"[^A-Za-z0-9._+/ -]", "?", text)


def _word_values() -> frozenset[str]:
    """The only strings that may reach generated code as values: the registry's words."""
    from rnnspec.cells.registry import BUILTIN_CELLS

    return frozenset(choice for cell in BUILTIN_CELLS.values() for rule in cell.arguments
                     for choice in rule.choices)


def _is_fused(block: model.Block, backend: str) -> bool:
    """Whether the block runs as its torch.nn module (cuDNN on CUDA): never with a recurrent
    regulariser, which no torch.nn module has."""
    return (backend == FUSED and torch_module(block.spec) is not None
            and not _regularisers(block))


def _regularisers(block: model.Block) -> tuple[str, ...]:
    """The recurrent regularisers a block uses (section 9), as `_Recurrent` arguments."""
    from rnnspec.cells.registry import REGULARISERS

    return tuple(name for name in REGULARISERS if block.arguments.get(name))


def _numbers(block: model.Block) -> str:
    """`{"clip": 3.0}`: a declared cell's number arguments for a block (section 11), the
    `numbers` of its `_Recurrent`; "" for a cell without them."""
    step = getattr(block.spec, "step", None)
    if step is None or not step.numbers:
        return ""
    return "{" + ", ".join(f'"{name}": {_py(float(block.arguments[name]))}'
                           for name in step.numbers) + "}"
def _direction_keywords(block: model.Block) -> tuple[str, ...]:
    """`_Recurrent`'s keywords for the section-11 forms a block uses (none at their
    defaults): `reverse=True`, `learned_states=("h0", "c0")`."""
    keywords = []
    if block.reverse:
        keywords.append("reverse=True")
    if block.learned_states:
        keywords.append(f"learned_states={_py_names(block.states)}")
    return tuple(keywords)


def _py_names(names) -> str:
    """A tuple of checked names as string literals: `("h0", "c0")`."""
    quoted = [f'"{_ident(name)}"' for name in names]
    return f"({', '.join(quoted)}{',' if len(quoted) == 1 else ''})"


def _runner(block: model.Block, backend: str) -> str:
    """The class that runs a block: `nn.LSTM`, or a cell written out (`_LSTM`, `_CellX`)."""
    cell = block.spec
    if _is_fused(block, backend):
        return f"nn.{torch_module(cell).torch_class}"
    return class_name(cell, block.arguments)


# The words of a built-in variant's class name beyond the cell's: `_LSTMProjNoBias`.
_VARIANT_WORDS = {"rnn": ("", "Relu"), "lstm": ("", "Proj")}


def class_name(cell, arguments: dict | None = None) -> str:
    """The generated class of a cell written out: one per built-in variant (`_LSTM`,
    `_LSTMProj`, `_GRUNoBias`, `_RNNRelu`), `_CellName` for a declared cell. The prefixes
    differ (`_Cell` is no built-in's), so no two cells or variants share a class."""
    module = torch_module(cell)
    if module is None:
        return f"_Cell{_ident(cell.name)}"
    from rnnspec.cells.builtin import variant

    name, bias, *flags = variant(cell, arguments or {})
    words = [_VARIANT_WORDS[name][flag not in (False, "tanh")] for flag in flags]
    return f"_{module.torch_class}" + "".join(words) + ("" if bias else "NoBias")


def _state_sizes(block: model.Block) -> tuple:
    return tuple(shape[-1] for shape in block.states.values())


def _fit(code: str, indent: int, comment: str = "") -> str:
    """A call or a list as `ruff format` writes it: on one line when it fits (with its
    trailing `comment`); else a call's arguments on one line of their own between the
    brackets where they fit there (one argument always); else, and for a list or tuple of
    several items, one item per line with a (magic) trailing comma."""
    opening = min((code.find(b) for b in "([" if code.find(b) >= 0), default=-1)
    if indent + len(code) + len(comment) <= LINE_LENGTH or opening < 0:
        return code + comment
    head, rest = code[:opening + 1], code[opening + 1:]
    inner = rest[:-1]
    arguments, depth, current, quoted = [], 0, "", False
    for ch in inner:
        quoted = not quoted if ch == '"' else quoted
        depth += (ch in "([{") - (ch in ")]}") if not quoted else 0
        if ch == "," and depth == 0 and not quoted:
            arguments.append(current.strip())
            current = ""
        else:
            current += ch
    arguments.append(current.strip())
    pad = " " * (indent + 4)
    flat = ", ".join(arguments)
    before = code[opening - 1] if opening else " "
    literal = not (before.isalnum() or before in "_)]")  # a list or tuple, not a call
    if len(arguments) == 1 or (not literal and len(pad) + len(flat) <= LINE_LENGTH):
        body = f"{pad}{flat}\n"
    else:
        body = "".join(f"{pad}{a},\n" for a in arguments)
    return f"{head}\n{body}{' ' * indent}{code[-1]}{comment}"
