"""The checked model: its imports and the records every consumer reads."""

import ast
from pathlib import Path

import rnnspec.model


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_model_imports_nothing_from_the_registry():
    # not even inside a function: the registry imports the model
    modules = _imported_modules(Path(rnnspec.model.__file__))
    assert not any(m.startswith("rnnspec.cells") for m in modules), modules
    assert not any(m.startswith(("rnnspec.check", "rnnspec.backends", "rnnspec.tools"))
                   for m in modules), modules


SPEC = """\
stack tagger {
  input_size = 20
  encoder = lstm(hidden_size = 50, bidirectional = true, merge = sum, residual = false)
  decoder = gru(hidden_size = 50, residual = true)
}
"""


def _with_layer():
    from rnnspec.check.checker import check_text

    (stack,) = check_text(SPEC, "tagger.rnn").stacks
    encoder, decoder = stack.entries
    weight = rnnspec.model.Parameter("weight", "weight", 0, False, (50, 50))
    layer = rnnspec.model.Layer(
        name="norm", kind="layer_norm", position=1, span=encoder.span, input_size=50,
        output_size=50, arguments={}, argument_spans={}, parameters=(weight,),
        buffers=(rnnspec.model.Buffer("running_mean", (50,)),), output=encoder.output,
        parameter_count=weight.numel)
    return stack._replace(entries=(encoder, layer, decoder)), layer


def test_entries_hold_blocks_and_layers_behind_one_protocol():
    stack, layer = _with_layer()
    assert [e.name for e in stack.entries] == ["encoder", "norm", "decoder"]
    assert [b.name for b in stack.blocks] == ["encoder", "decoder"]  # the recurrent ones
    encoder, _, decoder = stack.entries
    assert (encoder.recurrent, layer.recurrent) == (True, False)
    assert layer.states == {} and encoder.buffers == ()
    assert encoder.time == layer.time == "T"
    assert (encoder.merge, decoder.merge, layer.merge) == ("sum", None, None)
    assert (encoder.residual, decoder.residual, layer.residual) == (False, True, False)
    assert encoder.cell_span is not None and encoder.cell_span.line == 3
    assert rnnspec.model.final_key("c0") == "c_n"


def test_the_report_and_the_drawing_read_a_layer_through_the_protocol():
    from rnnspec.check.report import stack_json, stack_text
    from rnnspec.language.diagnostics import Style
    from rnnspec.tools.draw import draw_svg

    stack, _ = _with_layer()
    text = "\n".join(stack_text(stack, Style(False)))
    assert "  layer norm: layer_norm, 50 -> 50" in text
    assert "running_mean  [50]" in text
    document = stack_json(stack)
    # "blocks" keeps the recurrent blocks (v2's document); "entries" lists every entry
    assert [b["name"] for b in document["blocks"]] == ["encoder", "decoder"]
    assert [e["name"] for e in document["entries"]] == ["encoder", "norm", "decoder"]
    norm = document["entries"][1]
    assert norm["kind"] == "layer_norm" and norm["states"] == {}
    assert norm["buffers"] == {"running_mean": [50]}
    encoder = dict(document["entries"][0])
    assert (encoder.pop("kind"), encoder.pop("time"), encoder.pop("from")) == ("lstm", "T", None)
    assert encoder.pop("buffers") == {} and encoder.pop("arguments")["hidden_size"] == 50
    assert encoder == document["blocks"][0]
    assert "norm · layer_norm" in draw_svg([stack])
