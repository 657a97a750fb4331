"""The plain-PyTorch references of examples/*.rnn give the shapes of their `expect` blocks
and their output-length functions match the time axis they produce (no generator needed)."""

from __future__ import annotations

import pytest
import torch
from reference_models import (
    CRNN,
    DeepSpeech2,
    Sentiment,
    Tacotron2Encoder,
    Unmix,
    crnn_output_lengths,
    deepspeech2_output_lengths,
    tacotron2_encoder_output_lengths,
    unmix_output_lengths,
)


@pytest.fixture(scope="module")
def deepspeech2():
    torch.manual_seed(0)
    return DeepSpeech2().eval()


@pytest.fixture(scope="module")
def crnn():
    torch.manual_seed(0)
    return CRNN().eval()


def test_deepspeech2_shape(deepspeech2):
    # time: conv1 (200 + 2*5 - 1*(11 - 1) - 1) // 2 + 1 = 100, conv2 (100 + 10 - 10 - 1) // 1 + 1
    # = 100; bins (161 + 40 - 40 - 1) // 2 + 1 = 81, (81 + 20 - 20 - 1) // 2 + 1 = 41;
    # rnn1 reads 32 * 41 = 1312; merge = sum keeps 1024; head linear(29).
    expected = [(200 + 10 - 10 - 1) // 2 + 1, 4, 29]
    assert expected == [100, 4, 29]
    with torch.no_grad():
        out = deepspeech2(torch.randn(200, 4, 161))
    assert list(out.shape) == [100, 4, 29]


def test_crnn_shape(crnn):
    # width 100: conv0 100, pool0 (100 - 2) // 2 + 1 = 50, conv1 50, pool1 25, conv2-3 25,
    # pool2 (25 + 2 - 2) // 1 + 1 = 26, conv4-5 26, pool3 27, conv6 (27 - 2) // 1 + 1 = 26;
    # height 32 -> 16 -> 8 -> 4 -> 2 -> 1, so rnn0 reads 512 * 1; embedding1 gives 37.
    expected = [100 // 4 + 1, 4, 37]
    assert expected == [26, 4, 37]
    with torch.no_grad():
        out = crnn(torch.randn(100, 4, 32))
    assert list(out.shape) == [26, 4, 37]


def test_tacotron2_encoder_shape():
    # conv1d: (120 + 2*2 - 1*(5 - 1) - 1) // 1 + 1 = 120 three times; lstm 2 * 256 = 512.
    expected = [8, (120 + 4 - 4 - 1) // 1 + 1, 2 * 256]
    assert expected == [8, 120, 512]
    with torch.no_grad():
        out = Tacotron2Encoder().eval()(torch.randint(0, 148, (8, 120)))
    assert list(out.shape) == [8, 120, 512]


def test_sentiment_shape():
    # pool(final): cat(h_n[-2], h_n[-1]) = [64, 2 * 256]; linear(1): [64, 1].
    with torch.no_grad():
        out = Sentiment().eval()(torch.randint(0, 25_000, (64, 17)))
    assert list(out.shape) == [64, 1]


def test_unmix_shape():
    # fc1 2974 -> 512; concat(skip, lstm) 512 + 2 * 256 = 1024 -> fc2 512; fc3 2 * 2049.
    expected = [255, 4, 2 * 2049]
    assert expected == [255, 4, 4098]
    with torch.no_grad():
        out = Unmix().eval()(torch.randn(255, 4, 2 * 1487))
    assert list(out.shape) == [255, 4, 4098]


def _time_axis(model, make_input, axis, times):
    with torch.no_grad():
        return [model(make_input(t)).shape[axis] for t in times]


def test_deepspeech2_output_lengths(deepspeech2):
    times = list(range(1, 24))
    actual = _time_axis(deepspeech2, lambda t: torch.randn(t, 1, 161), 0, times)
    assert deepspeech2_output_lengths(torch.tensor(times)).tolist() == actual


def test_crnn_output_lengths(crnn):
    times = list(range(4, 40))
    actual = _time_axis(crnn, lambda t: torch.randn(t, 1, 32), 0, times)
    assert crnn_output_lengths(torch.tensor(times)).tolist() == actual
    assert crnn_output_lengths(torch.tensor(times)).tolist() == [t // 4 + 1 for t in times]


def test_tacotron2_encoder_output_lengths():
    model = Tacotron2Encoder().eval()
    times = list(range(1, 20))
    actual = _time_axis(model, lambda t: torch.randint(0, 148, (1, t)), 1, times)
    assert tacotron2_encoder_output_lengths(torch.tensor(times)).tolist() == actual


def test_unmix_output_lengths():
    model = Unmix().eval()
    times = list(range(1, 12))
    actual = _time_axis(model, lambda t: torch.randn(t, 2, 2974), 0, times)
    assert unmix_output_lengths(torch.tensor(times)).tolist() == actual
