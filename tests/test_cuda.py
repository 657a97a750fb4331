"""CUDA: generated models moved with .to("cuda") or built with device="cuda", fused
(cuDNN) against explicit on the GPU, and half-precision forwards. Skipped where
torch.cuda.is_available() is false; the differential tests also run on cuda through the
`device` fixture."""

from __future__ import annotations

import pytest
from conftest import ROOT

import rnnspec

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="CUDA is not available (torch.cuda.is_available() is false)"),
]

EXAMPLES = ROOT / "examples"


def _states(state):
    if isinstance(state, tuple):
        for s in state:
            yield from _states(s)
    else:
        yield state


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_moved_to_cuda_matches_cpu(backend):
    module = rnnspec.load(EXAMPLES / "tagger.rnn", backend=backend)
    model = module.PosTagger().eval()
    x = torch.randn(4, 9, 300)
    expected, expected_state = model(x)
    model.to("cuda")
    assert all(p.is_cuda for p in model.parameters())
    out, state = model(x.cuda())
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-5)
    for got, want in zip(_states(state), _states(expected_state), strict=True):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_built_on_cuda(backend):
    model = rnnspec.load(EXAMPLES / "seed.rnn", backend=backend).SeedLSTM(device="cuda")
    assert all(p.device.type == "cuda" for p in model.parameters())
    out, (h_n, c_n) = model(torch.randn(100, 32, 20, device="cuda"))
    assert out.is_cuda and tuple(out.shape) == (100, 32, 50)
    assert tuple(h_n.shape) == tuple(c_n.shape) == (2, 32, 50)


@pytest.mark.parametrize("name", ["SpeechEncoder"])
def test_fused_and_explicit_agree_on_cuda(name):
    fused = getattr(rnnspec.load(EXAMPLES / "speech.rnn", backend="fused"), name)(device="cuda")
    explicit = getattr(rnnspec.load(EXAMPLES / "speech.rnn", backend="explicit"), name)(
        device="cuda")
    explicit.load_state_dict(fused.state_dict())
    fused.eval()
    explicit.eval()
    x = torch.randn(2, 30, 80, device="cuda")
    (out1, s1), (out2, s2) = fused(x), explicit(x)
    torch.testing.assert_close(out1, out2, rtol=1e-4, atol=1e-4)
    for a, b in zip(_states(s1), _states(s2), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_half_precision_forward(backend, dtype):
    dtype = getattr(torch, dtype)
    module = rnnspec.load(EXAMPLES / "seed.rnn", backend=backend)
    reference = module.SeedGRU(device="cuda").eval()
    half = module.SeedGRU(device="cuda", dtype=dtype).eval()
    half.load_state_dict({k: v.to(dtype) for k, v in reference.state_dict().items()})
    x = torch.randn(50, 8, 20, device="cuda")
    out, h_n = half(x.to(dtype))
    assert out.dtype == dtype
    expected, _ = reference(x)
    tolerance = 2e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), expected, rtol=tolerance, atol=tolerance)


NETWORKS = {"deepspeech2": ("DeepSpeech2", (60, 2, 161)), "crnn": ("CRNN", (100, 2, 32)),
            "unmix": ("Unmix", (20, 2, 2974)), "tacotron2_encoder": ("Tacotron2Encoder", None),
            "sentiment": ("Sentiment", None)}


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("example", sorted(NETWORKS))
def test_networks_with_lengths_match_cpu_on_cuda(example, backend):
    """Stacks with layers (section 10) on the GPU: padded batches, every layer's masking."""
    name, shape = NETWORKS[example]
    model = getattr(rnnspec.load(EXAMPLES / f"{example}.rnn", backend=backend), name)().eval()
    stack = rnnspec.check_file(EXAMPLES / f"{example}.rnn").stacks[0]
    if shape is None:  # integer ids
        x = torch.randint(2, 100, (2, 30) if stack.batch_first else (30, 2))
    else:
        x = torch.randn(*shape)
    steps = x.shape[1 if stack.batch_first else 0]
    lengths = torch.tensor([steps, steps - 9])
    with torch.no_grad():
        expected, _ = model(x, lengths=lengths)
        model.to("cuda")
        out, _ = model(x.cuda(), lengths=lengths.cuda())
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
    if stack.entries[-1].time is not None:
        assert model.output_lengths(lengths.cuda()).cpu().tolist() == \
            model.output_lengths(lengths).tolist()
