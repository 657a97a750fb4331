"""Which names a spec may give to constants, stacks and blocks.

Stack names become class names in the generated module and block names become attributes
of `nn.Module` subclasses, so both are checked here before anything reaches a template.
Values never become names: they reach generated code only as int/float/bool literals.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata

from rnnspec.language.diagnostics import Diagnostic, Span, did_you_mean, error
from rnnspec.language.parse import language_words

# Public attributes of torch.nn.Module (torch 2.x), which a submodule must not replace.
# tests/test_names.py checks this list against dir(torch.nn.Module) of the installed torch.
NN_MODULE_ATTRIBUTES = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu load_state_dict modules mtia named_buffers named_children
named_modules named_parameters parameters register_backward_hook register_buffer
register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter
register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split())

# Class attributes every generated stack class defines (templates/stack.py.jinja);
# tests/test_names.py checks both sets against generated modules, so neither drifts.
GENERATED_CLASS_ATTRIBUTES = frozenset({
    "input_size", "output_size", "batch_first", "block_names", "step", "entry_names",
    "min_input_time", "output_lengths", "quantize_dynamic",
})

# The locals of a generated network's `forward` (backends/torch/network.py): a side input,
# which is a keyword argument of forward, must not take one of them.
FORWARD_LOCALS = frozenset({"self", "input", "hx", "lengths", "x", "batch", "before",
                            "x_input"})
FORWARD_PREFIXES = ("out_", "state_", "lengths_")

# Module-level names of the generated file (templates/module.py.jinja imports them; the
# module's own helpers start with `_`): a stack class must not shadow them.
GENERATED_MODULE_GLOBALS = frozenset({
    "torch", "nn", "F", "Tensor", "NamedTuple", "annotations", "math", "copy", "warnings",
})

# Look-alike letters from other scripts, for the "did you mean" of a non-ASCII name.
_LOOKALIKES = str.maketrans({
    cyrillic_or_greek: latin
    for pair in ("аa Аa Вb еe Еe іi Іi јj Кk кk Мm мm Нh оo Оo рp Рp сc Сc Тt хx Хx уy Уy "
                 "ѕs ԁd һh ӏl ɡg Αa Βb Εe Ηh Ιi Κk Μm Νn Οo Ρp Τt Υy Χx Ζz οo νv").split()
    for cyrillic_or_greek, latin in [(pair[0], pair[1] if pair[0].islower() else pair[1].upper())]
})


def ascii_lookalike(name: str) -> str:
    """`name` with compatibility forms and common look-alike letters made ASCII."""
    folded = unicodedata.normalize("NFKC", name).translate(_LOOKALIKES)
    return "".join(ch for ch in folded if ch.isascii())


def _non_ascii(name: str, span: Span, kind: str) -> Diagnostic:
    odd = next(ch for ch in name if not ch.isascii())
    character = f"`{odd}` (U+{ord(odd):04X} {unicodedata.name(odd, 'unnamed character')})"
    lookalike = ascii_lookalike(name)
    hint = f"did you mean `{lookalike}`?" if lookalike.isidentifier() else "use ASCII letters"
    return error("E012", f"{kind} name `{name}` is not ASCII: it contains {character}", span,
                 help=hint)


def check_name(name: str, span: Span, kind: str) -> Diagnostic | None:
    """A diagnostic if `name` may not name a `kind` ("constant", "stack" or "block")."""
    if not name.isascii():
        return _non_ascii(name, span, kind)
    if not name.isidentifier():
        return error("E012", f"{kind} name `{name}` is not an identifier", span)
    if keyword.iskeyword(name):
        return error("E012", f"{kind} name `{name}` is a Python keyword", span,
                     help="choose another name")
    if name in language_words():
        return error("E012", f"{kind} name `{name}` is a word of the .rnn language", span,
                     help="choose another name")
    if kind == "constant":
        if name == "_":
            return error("E012", "`_` cannot name a constant: it means any size in a shape",
                         span)
        return None
    if name.startswith("_"):
        return error("E012", f"{kind} name `{name}` starts with `_`", span,
                     help="names starting with `_` are kept for generated code")
    if kind == "side input" and (name in FORWARD_LOCALS or name.startswith(FORWARD_PREFIXES)):
        return error("E012", f"side input `{name}` would clash with a name of the generated "
                     "forward", span, help=f"choose another name, such as `{name}_input`")
    if kind in ("block", "layer") and name == "input":
        return error("E012", f"{kind} name `input` is the stack's input (`from = input`)", span,
                     help="choose another name, such as `input_layer`")
    if kind in ("block", "layer") and name in NN_MODULE_ATTRIBUTES | GENERATED_CLASS_ATTRIBUTES:
        owner = "torch.nn.Module" if name in NN_MODULE_ATTRIBUTES else "the generated class"
        return error("E012", f"{kind} name `{name}` would replace `{name}` of {owner}", span,
                     help="choose another name, such as `" + name + "_block`")
    if kind == "stack" and (name in GENERATED_MODULE_GLOBALS or hasattr(builtins, name)):
        what = "the builtin" if hasattr(builtins, name) else "the generated module's"
        return error("E012", f"stack name `{name}` would shadow {what} `{name}`", span,
                     help="choose another name, such as `" + name.capitalize() + "Stack`")
    return None


_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """`TorchGRU` -> `torch_gru`, `MinGRU0` -> `min_gru0`, `lstm` -> `lstm`: the name of
    an auto-named block, an attribute and a state-dict key as PEP 8 writes them."""
    return _WORD_START.sub("_", name).lower()


def suggest(name: str, candidates) -> str | None:
    """A "did you mean" that also sees through look-alike letters."""
    return did_you_mean(name, candidates) or (
        did_you_mean(ascii_lookalike(name), candidates) if not name.isascii() else None
    )


class Namespace:
    """Unique names, the wanted one where it is free (in the manner of torch.fx's
    `_Namespace`): `create("h")` gives `h`, then `h_1`, `h_2`, ... Every name rnnspec
    writes or invents (generated locals, ONNX values, inferred stacks, cell locals) comes
    from one of these; `separator` and `first` set the suffix (`Encoder`, `Encoder2`;
    `x`, `x.1`), `taken` and `reject` what counts as used."""

    __slots__ = ("used", "separator", "first", "_reject")

    def __init__(self, taken=(), *, separator: str = "_", first: int = 1, reject=None):
        self.used: set[str] = set(taken)
        self.separator = separator
        self.first = first
        self._reject = reject  # a predicate: names it accepts count as taken too

    def __contains__(self, name: str) -> bool:
        return name in self.used or (self._reject is not None and self._reject(name))

    def add(self, name: str) -> None:
        """Mark `name` as taken (a name fixed from outside, such as a graph input)."""
        self.used.add(name)

    def update(self, names) -> None:
        self.used.update(names)

    def create(self, base: str) -> str:
        name, index = base, self.first
        while name in self:
            name, index = f"{base}{self.separator}{index}", index + 1
        self.used.add(name)
        return name

    def identifier(self, base: str) -> str:
        """`create` for a Python name: refuses what is not an ASCII identifier or a keyword
        (user text never becomes code unchecked)."""
        if not (base.isidentifier() and base.isascii()) or keyword.iskeyword(base):
            raise ValueError(f"refusing to put {base!r} into generated code as a name")
        return self.create(base)
