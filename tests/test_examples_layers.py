"""The generated stacks of examples/*.rnn equal the plain-PyTorch references (section 10):
same state dict, same outputs in eval mode, same output lengths. Skipped per example until
the spec checks clean (the section 10 generator is not merged yet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import reference_models as ref
import torch

import rnnspec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# (file, stack, reference class, input maker, output-lengths function or None, lengths)
CASES = {
    "deepspeech2": ("DeepSpeech2", ref.DeepSpeech2, lambda: torch.randn(40, 2, 161),
                    ref.deepspeech2_output_lengths, [40, 33, 7]),
    "crnn": ("CRNN", ref.CRNN, lambda: torch.randn(100, 2, 32),
             ref.crnn_output_lengths, [100, 64, 4]),
    "tacotron2_encoder": ("Tacotron2Encoder", ref.Tacotron2Encoder,
                          lambda: torch.randint(0, 148, (2, 30)),
                          ref.tacotron2_encoder_output_lengths, [30, 12, 1]),
    "sentiment": ("Sentiment", ref.Sentiment, lambda: torch.randint(0, 25_000, (3, 15)),
                  None, None),
    "unmix": ("Unmix", ref.Unmix, lambda: torch.randn(20, 2, 2974),
              ref.unmix_output_lengths, [20, 9, 1]),
}


def _generator_ready(path: Path) -> bool:
    try:
        return bool(rnnspec.check_file(path).ok)
    except Exception:
        return False


def _randomise_buffers(model):
    # running statistics away from (0, 1) so that eval-mode batch norm is really checked
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_equals_reference(name, backend):
    path = EXAMPLES / f"{name}.rnn"
    if not _generator_ready(path):
        pytest.skip(f"{path.name} does not check clean yet (section 10 generator)")
    stack, reference_class, make_input, output_lengths, lengths = CASES[name]
    torch.manual_seed(0)
    reference = reference_class().eval()
    _randomise_buffers(reference)
    module = rnnspec.load(path, backend)
    model = getattr(module, stack)()
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    x = make_input()
    with torch.no_grad():
        expected = reference(x)
        actual = model(x)[0]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    if output_lengths is None:
        with pytest.raises(TypeError):
            model.output_lengths(torch.tensor([3, 2, 1]))
    else:
        given = torch.tensor(lengths)
        assert torch.as_tensor(model.output_lengths(given)).tolist() == \
            output_lengths(given).tolist()
