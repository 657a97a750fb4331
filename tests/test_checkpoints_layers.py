"""`rnnspec infer` writes the layers beside recurrent modules (section 10): the inferred spec
of a reference model checks clean and its generated module loads the state dict strictly,
or, where keys cannot tell (a 2-D run's bins), it lists every key and says what to fill in."""

from __future__ import annotations

import pytest
import reference_models as ref

import rnnspec
from rnnspec.check.checker import check_text
from rnnspec.tools.checkpoints.compare import compare
from rnnspec.tools.checkpoints.infer import Module, infer_stacks, render_spec
from rnnspec.tools.checkpoints.read import read_checkpoint

torch = pytest.importorskip("torch")
nn = torch.nn


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(40, 64)
        self.lstm = nn.LSTM(64, 32, bidirectional=True)
        self.bn = nn.BatchNorm1d(64)
        self.head = nn.Linear(64, 29)


def inferred(state: dict) -> str:
    tensors = {k: (tuple(v.shape), "float32") for k, v in state.items()}
    stacks, skipped, notes = infer_stacks(tensors)
    assert skipped == [] and notes == []
    return render_spec([s for s in stacks if isinstance(s, Module)], "x.pt", (), stacks)


@pytest.mark.parametrize("reference", [ref.Sentiment, ref.Tacotron2Encoder, Chain])
def test_inferred_spec_loads_the_state_dict(reference, tmp_path):
    state = reference().state_dict()
    text = inferred(state)
    result = check_text(text, "inferred.rnn")
    assert result.ok, [d.message for d in result.diagnostics]
    path = tmp_path / "inferred.rnn"
    path.write_text(text)
    model = rnnspec.load(path, "fused").Model()
    model.load_state_dict(state, strict=True)


def test_chain_is_written_in_size_order():
    text = inferred(Chain().state_dict())
    assert "input_size = 40" in text and "head = linear(29)" in text
    assert text.index("proj =") < text.index("lstm =") < text.index("bn =") < \
        text.index("head =")


def test_conv2d_runs_list_every_key_and_say_what_to_fill_in():
    state = ref.DeepSpeech2().state_dict()
    text = inferred(state)
    for module in {k.rsplit(".", 1)[0] for k in state}:
        assert f"    {module} = " in text
    assert "# input_size = ?  fill in" in text and "fill them in" in text
    assert "rnn1 = lstm(hidden_size = 1024, bidirectional = true, merge = sum)" in text
    assert "fc = linear(29, bias = false)" in text


def test_check_weights_detects_the_prefix_of_an_inferred_stack_with_layers(tmp_path):
    state = {"encoder." + k: v for k, v in ref.Sentiment().state_dict().items()}
    text = inferred(state)
    assert "stack Encoder {" in text
    result = check_text(text, "inferred.rnn")
    path = tmp_path / "c.pt"
    torch.save(state, path)
    tensors = read_checkpoint(str(path))
    comparison = compare(result, result.stacks[0], tensors, str(path))
    assert comparison.diagnostics == [] and comparison.prefix == "encoder."
    assert len(comparison.matched) == len(state)
