"""Section 10 through `rnnspec export`: stacks with layers as ONNX, run by onnxruntime,
equal to the generated PyTorch module (evaluation mode, float32), with padded lengths."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from rnnspec import check_source  # noqa: E402
from rnnspec.backends.onnx import export as onnx_export  # noqa: E402
from rnnspec.backends.torch.codegen import generate_source, load_source  # noqa: E402

NETWORKS = {
    "chain": ("stack Net {\n input_size = 6\n proj = linear(8)\n norm = layer_norm()\n gelu()\n"
              " conv = conv1d(5, 3, padding = 1, stride = 2)\n bn = batch_norm()\n silu()\n"
              " pool = max_pool1d(2, ceil_mode = true)\n rnn = lstm(hidden_size = 4, "
              "bidirectional = true)\n subsample(2)\n stack_frames(2)\n hardtanh(-0.5, 0.5)\n"
              " head = linear(3)\n log_softmax()\n}\n", "Net"),
    "ids": ("stack Ids {\n batch_first = true\n embedding(30, 6, padding_idx = 0)\n"
            " gru(hidden_size = 5, num_layers = 2, bidirectional = true)\n pool(final)\n"
            " leaky_relu(0.2)\n linear(2)\n}\n", "Ids"),
    "wiring": ("stack Wired {\n input_size = 4\n who = input(3, over = sequence)\n"
               " pitch = input(2)\n a = linear(6)\n b = rnn(hidden_size = 6, from = input)\n"
               " s = linear(5, from = sum(a, b))\n lstm(hidden_size = 3, from = concat(s, who, "
               "pitch))\n pool(mean)\n}\n", "Wired"),
    "speech": ("stack Speech {\n input_size = 21\n conv1 = conv2d(3, [5, 3], stride = [2, 2], "
               "padding = [2, 1])\n batch_norm()\n hardtanh(0.0, 20.0)\n"
               " pool = max_pool2d([2, 3], stride = [1, 2], padding = [1, 1], ceil_mode = true)\n"
               " gru(hidden_size = 4, bidirectional = true)\n linear(3)\n}\n", "Speech"),
    "time_first": ("stack Sub {\n batch_first = true\n input_size = 12\n"
                   " conv2d(2, [3, 3], stride = [2, 2], layout = time_first)\n relu()\n"
                   " conv2d(2, [3, 3], stride = [2, 2], layout = time_first)\n}\n", "Sub"),
    "heads": ("stack Heads {\n input_size = 4\n conv1d(4, 2)\n gru(hidden_size = 3)\n"
              " pool(last)\n relu()\n}\n", "Heads"),
}


def _session(text: str, name: str, lengths: bool):
    result = check_source(text, "net.rnn")
    assert result.ok, result.diagnostics
    stack = result.stacks[0]
    torch.manual_seed(0)
    module = getattr(load_source(generate_source(result), "net.rnn"), name)().eval()
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    weights = onnx_export.match_weights(stack, module.state_dict(), "the module")
    model = onnx_export.build_model(stack, weights, lengths=lengths)
    onnx_export.validate(model)
    return module, stack, ort.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])


def _inputs(stack, steps: int, batch: int):
    if stack.ids:
        x = torch.randint(2, 30, (batch, steps) if stack.batch_first else (steps, batch))
    else:
        x = torch.randn(*((batch, steps) if stack.batch_first else (steps, batch)),
                        stack.input_size)
    sides = {}
    for side in stack.side_inputs:
        lead = (batch, steps) if stack.batch_first else (steps, batch)
        sides[side.name] = torch.randn(batch, side.size) if side.per_sequence else \
            torch.randn(*lead, side.size)
    return x, sides


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("case", sorted(NETWORKS))
def test_exported_network_equals_the_generated_module(case, lengths):
    text, name = NETWORKS[case]
    module, stack, session = _session(text, name, lengths)
    steps = max(12, stack.min_input_time + 6)
    x, sides = _inputs(stack, steps, 3)
    feeds = {"input": x.numpy(), **{k: v.numpy() for k, v in sides.items()}}
    given = None
    if lengths:
        given = torch.tensor([steps, steps - 3, stack.min_input_time + 1])
        feeds["lengths"] = given.numpy()
    outputs = session.run(None, feeds)
    names = [o.name for o in session.get_outputs()]
    with torch.no_grad():
        expected, _ = module(x, lengths=given, **sides)
    torch.testing.assert_close(torch.from_numpy(outputs[0]), expected, atol=1e-5, rtol=1e-5)
    if lengths and stack.entries[-1].time is not None:
        produced = outputs[names.index("output_lengths")]
        assert produced.tolist() == module.output_lengths(given).tolist()


def test_refusals_say_why():
    from rnnspec.backends.onnx.graph import ExportError

    text = ("stack S {\n input_size = 8\n avg_pool2d(2, ceil_mode = true)\n"
            " gru(hidden_size = 2)\n}\n")
    stack = check_source(text, "s.rnn").stacks[0]
    with pytest.raises(ExportError, match="ceil_mode"):
        onnx_export.build_model(stack, {}, lengths=True)
    text = "stack S {\n input_size = 8\n layer_norm()\n}\n"
    stack = check_source(text, "s.rnn").stacks[0]
    with pytest.raises(ExportError, match="opset 17"):
        onnx_export.build_model(stack, {}, opset=16)


EXAMPLES = {"crnn": "CRNN", "deepspeech2": "DeepSpeech2", "tacotron2_encoder": "Tacotron2Encoder",
            "unmix": "Unmix", "sentiment": "Sentiment"}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_export_with_lengths(example):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{example}.rnn"
    module, stack, session = _session(path.read_text(), EXAMPLES[example], True)
    steps = 40 if example != "crnn" else 100
    x, sides = _inputs(stack, steps, 2)
    if example == "crnn":
        x = torch.randn(steps, 2, stack.input_size)
    axis = 1 if stack.batch_first else 0
    given = torch.tensor([x.shape[axis], x.shape[axis] - 7])
    feeds = {"input": x.numpy(), "lengths": given.numpy(),
             **{k: v.numpy() for k, v in sides.items()}}
    output = session.run(None, feeds)[0]
    with torch.no_grad():
        expected, _ = module(x, lengths=given, **sides)
    torch.testing.assert_close(torch.from_numpy(output), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["chain", "time_first"])
def test_a_length_that_falls_below_one_step_becomes_zero_in_the_graph(case):
    """The generated module raises a ValueError for a positive length that a layer shortens
    below one step; a graph cannot raise, so it treats that sequence as one of length 0
    (zero outputs, `output_lengths` 0), and the other sequences are unaffected."""
    text, name = NETWORKS[case]
    module, stack, session = _session(text, name, True)
    steps = max(12, stack.min_input_time + 6)
    x, sides = _inputs(stack, steps, 3)
    short = 1 if stack.min_input_time > 1 else None
    assert short is not None, "the case must have a layer that shortens time"
    given = torch.tensor([steps, short, steps - 2])
    with pytest.raises(ValueError, match="length"):
        module(x, lengths=given, **sides)
    feeds = {"input": x.numpy(), "lengths": given.numpy(),
             **{k: v.numpy() for k, v in sides.items()}}
    outputs = session.run(None, feeds)
    names = [o.name for o in session.get_outputs()]
    assert outputs[names.index("output_lengths")].tolist()[1] == 0
    axis = 1 if stack.batch_first else 0
    batch_axis = 1 - axis
    produced = torch.from_numpy(outputs[0])
    assert not produced.select(batch_axis, 1).any()
    keep = torch.tensor([0, 2])
    with torch.no_grad():
        expected, _ = module(x.index_select(batch_axis, keep), lengths=given[keep],
                             **{k: v.index_select(1 if v.dim() == 3 and not stack.batch_first
                                                  else 0, keep) for k, v in sides.items()})
    torch.testing.assert_close(produced.index_select(batch_axis, keep), expected,
                               atol=1e-5, rtol=1e-5)
