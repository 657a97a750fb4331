"""The section-11 stacks at the end of examples/cells.rnn against torch.nn: `Backward` (a
reverse-only LSTM stack) equals nn.LSTM run forwards on each sequence flipped within its
length; `Names` (a GRU with learned initial states) equals nn.GRU given hx = the learned
vectors expanded over the batch. Both torch backends, with and without lengths."""

from __future__ import annotations

from pathlib import Path

import pytest

import rnnspec

torch = pytest.importorskip("torch")
nn = torch.nn
CELLS = Path(__file__).resolve().parent.parent / "examples" / "cells.rnn"


def _randomised(model):
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("padded", [False, True])
def test_backward_is_nn_lstm_on_flipped_sequences(backend, padded):
    model = _randomised(rnnspec.load(CELLS, backend=backend).Backward())
    reference = nn.LSTM(40, 128, num_layers=2)
    reference.load_state_dict({k.removeprefix("back."): v for k, v in model.state_dict().items()})
    x = torch.randn(9, 3, 40)
    lengths = [9, 4, 1] if padded else [9, 9, 9]
    with torch.no_grad():
        out, (h, c) = model(x, lengths=lengths if padded else None)
        for b, n in enumerate(lengths):
            y, (rh, rc) = reference(x[:n, b].flip(0))
            torch.testing.assert_close(out[:n, b], y.flip(0), atol=1e-5, rtol=1e-5)
            assert torch.all(out[n:, b] == 0)
            torch.testing.assert_close(h[:, b], rh, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(c[:, b], rc, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_names_is_nn_gru_from_its_learned_states(backend):
    model = _randomised(rnnspec.load(CELLS, backend=backend).Names())
    learned = {"names.h0_l0", "names.h0_l1"}
    assert learned <= set(model.state_dict())
    reference = nn.GRU(27, 64, num_layers=2, batch_first=True)
    reference.load_state_dict({k.removeprefix("names."): v for k, v in
                               model.state_dict().items() if k not in learned})
    x = torch.randn(4, 11, 27)
    hx = torch.stack([model.names.h0_l0, model.names.h0_l1]).unsqueeze(1).expand(2, 4, 64)
    lengths = torch.tensor([11, 3, 0, 7])
    with torch.no_grad():
        out, h = model(x)
        y, rh = reference(x, hx)
        torch.testing.assert_close(out, y, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(h, rh, atol=1e-5, rtol=1e-5)
        out, h = model(x, lengths=lengths)
        keep = torch.tensor([0, 1, 3])
        packed = nn.utils.rnn.pack_padded_sequence(x[keep], lengths[keep], batch_first=True,
                                                   enforce_sorted=False)
        y, rh = reference(packed, hx[:, keep].contiguous())
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=11)
    torch.testing.assert_close(out[keep], y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[:, keep], rh, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[:, 2], hx[:, 2])  # length 0: the learned state itself
