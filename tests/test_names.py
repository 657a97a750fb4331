"""Names that reach generated code: refused with a located E012, or harmless.

Every stack and block name is checked before it reaches a template; this proves that a
generated module imports and runs for every name the checker accepts.
"""

from __future__ import annotations

import builtins
import keyword

import pytest

import rnnspec
from rnnspec.backends.torch.codegen import generate_source, load_source
from rnnspec.language.names import (
    GENERATED_CLASS_ATTRIBUTES,
    GENERATED_MODULE_GLOBALS,
    NN_MODULE_ATTRIBUTES,
)
from rnnspec.language.parse import language_words

torch = pytest.importorskip("torch")

RISKY = sorted(
    set("""
    torch nn F Tensor NamedTuple Optional Tuple List Dict Union Any Callable annotations math
    super type
    print input len tuple isinstance ValueError range self cls hx output batch h0 c0 state_0
    __init__ __class__ __dict__ _batch_size _check_state _LSTM _Recurrent _ __ forward
    training state_dict to cuda parameters input_size output_size batch_first block_names
    let stack expect true false lstm gru rnn dropout weight_ih_l0 Net exec eval open id object
    cell state param step merge residual lengths _layer_norm _concat _CellX
    """.split())
    | set(keyword.kwlist)
)


def test_nn_module_attribute_list_covers_torch():
    public = {name for name in dir(torch.nn.Module) if not name.startswith("_")}
    public |= {name for name in vars(torch.nn.Module()) if not name.startswith("_")}
    assert public <= NN_MODULE_ATTRIBUTES, sorted(public - NN_MODULE_ATTRIBUTES)


def _outcome(text):
    result = rnnspec.check_source(text, "names.rnn")
    refusals = [d for d in result.diagnostics if d.is_error]
    return result, refusals


def _runs(result, stack_name, block_name=None):
    for backend in ("fused", "explicit"):
        module = load_source(generate_source(result, backend=backend), "names.rnn")
        cls = getattr(module, stack_name)
        model = cls()
        out, (h, c) = model(torch.randn(4, 2, 3))
        assert tuple(out.shape) == (4, 2, 5)
        if block_name:
            assert next(iter(model.state_dict())).startswith(f"{block_name}.")
        # and the module's own helpers still work after the class definition
        with pytest.raises(ValueError):
            model(torch.randn(4, 2, 7))


LANGUAGE = language_words()  # the grammar's keywords: `let`, `stack`, `cell`, `if`, ...
MODULE_GLOBALS = GENERATED_MODULE_GLOBALS  # checked against generated modules below


def _may_be_refused(name: str, role: str) -> bool:
    """The reasons the docs give for refusing a name in this role."""
    common = name.startswith("_") or keyword.iskeyword(name) or name in LANGUAGE
    if role == "stack":
        return common or hasattr(builtins, name) or name in MODULE_GLOBALS
    return common or name in NN_MODULE_ATTRIBUTES | GENERATED_CLASS_ATTRIBUTES | {"input"}


@pytest.mark.parametrize("role", ["stack", "block"])
@pytest.mark.parametrize("name", RISKY)
def test_names_are_refused_or_harmless(name, role):
    if role == "stack":
        text = f"stack {name} {{\n    input_size = 3\n    lstm(hidden_size = 5)\n}}\n"
    else:
        text = f"stack Net {{\n    input_size = 3\n    {name} = lstm(hidden_size = 5)\n}}\n"
    result, refusals = _outcome(text)
    if refusals:
        assert refusals[0].code in ("E012", "E001"), refusals
        assert refusals[0].span.line == (1 if role == "stack" else 3)
        assert _may_be_refused(name, role)
        return
    assert not _may_be_refused(name, role), f"{name} should have been refused"
    if role == "stack":
        _runs(result, name)
    else:
        _runs(result, "Net", name)


@pytest.mark.parametrize("name", ["lstм", "Νet", "ｎｅｔ", "naïve"])
def test_non_ascii_names_are_refused_with_a_suggestion(name):
    text = f"stack {name} {{\n    input_size = 3\n    lstm(hidden_size = 5)\n}}\n"
    result, refusals = _outcome(text)
    (diagnostic,) = refusals
    assert diagnostic.code == "E012" and "not ASCII" in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column) == (1, 7)


def test_lookalike_cell_gets_did_you_mean():
    text = "stack Net {\n    input_size = 3\n    lstм(hidden_size = 5)\n}\n"
    _, refusals = _outcome(text)
    (diagnostic,) = refusals
    assert diagnostic.code == "E033" and diagnostic.help == "did you mean `lstm`?"


def test_unnamed_blocks_are_named_by_cell_and_index():
    text = ("stack Net {\n    input_size = 3\n    lstm(hidden_size = 5)\n"
            "    mid = gru(hidden_size = 4)\n    rnn(hidden_size = 2)\n}\n")
    result, refusals = _outcome(text)
    assert not refusals
    assert [b.name for b in result.stacks[0].blocks] == ["lstm0", "mid", "rnn2"]


def test_named_block_colliding_with_an_automatic_name_is_a_duplicate():
    text = ("stack Net {\n    input_size = 3\n    lstm(hidden_size = 5)\n"
            "    lstm0 = gru(hidden_size = 4)\n}\n")
    _, refusals = _outcome(text)
    (diagnostic,) = refusals
    assert diagnostic.code == "E011" and diagnostic.span.line == 4


def _generated_modules():
    from conftest import OWN_EXAMPLES, shared_examples

    for path in [*shared_examples(), *sorted(OWN_EXAMPLES.glob("*.rnn"))]:
        result = rnnspec.check_file(path)
        if result.ok:
            for backend in ("fused", "explicit"):
                yield result, load_source(generate_source(result, backend=backend), str(path))


def test_reserved_module_names_are_exactly_what_generated_modules_define():
    """No drift either way: every public global of a generated module is reserved for stack
    names, and every reserved name is defined by some generated module."""
    from rnnspec.language.names import GENERATED_MODULE_GLOBALS

    seen = set()
    for result, module in _generated_modules():
        stacks = {stack.name for stack in result.stacks}
        public = {name for name in vars(module)
                  if not name.startswith("_") and name not in stacks}
        assert public <= GENERATED_MODULE_GLOBALS, sorted(public - GENERATED_MODULE_GLOBALS)
        seen |= public
    assert seen == GENERATED_MODULE_GLOBALS


def test_reserved_class_attributes_are_exactly_what_generated_classes_define():
    seen = set()
    for result, module in _generated_modules():
        for stack in result.stacks:
            cls = getattr(module, stack.name)
            own = {name for name in vars(cls) if not name.startswith("_")
                   and not hasattr(torch.nn.Module, name)}
            own -= {"forward"}  # nn.Module's own, overridden
            assert own <= GENERATED_CLASS_ATTRIBUTES, sorted(own - GENERATED_CLASS_ATTRIBUTES)
            seen |= own
    assert seen == GENERATED_CLASS_ATTRIBUTES
