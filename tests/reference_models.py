"""Plain-PyTorch references for the five real models in examples/ (no rnnspec imports).

Each module's state-dict keys are `<entry name>.<PyTorch key>` for the entries of the
matching spec, so a checkpoint of one loads into the module rnnspec generates. Inputs are
what the generated stack takes: `[T, B, F]` (or ids), `[B, T, ...]` with `batch_first`.
"""

from __future__ import annotations

import torch
from torch import nn


def _sum_directions(x: torch.Tensor) -> torch.Tensor:
    # deepspeech.pytorch's BatchRNN: (T x N x H*2) -> (T x N x H) by sum
    return x.view(x.size(0), x.size(1), 2, -1).sum(2)


class DeepSpeech2(nn.Module):
    """deepspeech.pytorch's DeepSpeech (SeanNaren/deepspeech.pytorch, model.py)."""

    def __init__(self, bins: int = 161, hidden: int = 1024, layers: int = 5, classes: int = 29):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5))
        self.bn1 = nn.BatchNorm2d(32)
        self.hardtanh2 = nn.Hardtanh(0, 20)
        self.conv2 = nn.Conv2d(32, 32, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5))
        self.bn2 = nn.BatchNorm2d(32)
        self.hardtanh5 = nn.Hardtanh(0, 20)
        size = (bins + 2 * 20 - 41) // 2 + 1
        size = (size + 2 * 10 - 21) // 2 + 1
        self.rnn_names = [f"rnn{k}" for k in range(1, layers + 1)]
        self.rnn1 = nn.LSTM(32 * size, hidden, bidirectional=True)
        for k in range(2, layers + 1):
            setattr(self, f"bn_rnn{k}", nn.BatchNorm1d(hidden))
            setattr(self, f"rnn{k}", nn.LSTM(hidden, hidden, bidirectional=True))
        self.fc_bn = nn.BatchNorm1d(hidden)
        self.fc = nn.Linear(hidden, classes, bias=False)
        self.log_softmax = nn.LogSoftmax(dim=-1)

    @staticmethod
    def _sequence_wise(module, x):
        t, n = x.size(0), x.size(1)
        return module(x.reshape(t * n, -1)).view(t, n, -1)

    def forward(self, x):
        x = x.permute(1, 2, 0).unsqueeze(1)                      # [B, 1, F, T]
        x = self.hardtanh2(self.bn1(self.conv1(x)))
        x = self.hardtanh5(self.bn2(self.conv2(x)))
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).permute(2, 0, 1)              # [T', B, C * F']
        x = _sum_directions(self.rnn1(x)[0])
        for k in range(2, len(self.rnn_names) + 1):
            x = self._sequence_wise(getattr(self, f"bn_rnn{k}"), x)
            x = _sum_directions(getattr(self, f"rnn{k}")(x)[0])
        x = self._sequence_wise(self.fc_bn, x)
        return self.log_softmax(self.fc(x))


def deepspeech2_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """deepspeech.pytorch's get_seq_lens: the time-axis conv formula of each Conv2d."""
    seq_len = lengths
    for padding, dilation, kernel, stride in ((5, 1, 11, 2), (5, 1, 11, 1)):
        seq_len = (seq_len + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return seq_len.int()


class CRNN(nn.Module):
    """meijieru/crnn.pytorch models/crnn.py: CRNN(imgH=32, nc=1, nclass=37, nh=256)."""

    def __init__(self, nclass: int = 37, nh: int = 256):
        super().__init__()
        ks = [3, 3, 3, 3, 3, 3, 2]
        ps = [1, 1, 1, 1, 1, 1, 0]
        nm = [64, 128, 256, 256, 512, 512, 512]
        self.order = []

        def conv_relu(i, batch_norm=False):
            n_in = 1 if i == 0 else nm[i - 1]
            setattr(self, f"conv{i}", nn.Conv2d(n_in, nm[i], ks[i], 1, ps[i]))
            self.order.append(f"conv{i}")
            if batch_norm:
                setattr(self, f"batchnorm{i}", nn.BatchNorm2d(nm[i]))
                self.order.append(f"batchnorm{i}")
            setattr(self, f"relu{i}", nn.ReLU())
            self.order.append(f"relu{i}")

        def pool(i, *args):
            setattr(self, f"pooling{i}", nn.MaxPool2d(*args))
            self.order.append(f"pooling{i}")

        conv_relu(0)
        pool(0, 2, 2)
        conv_relu(1)
        pool(1, 2, 2)
        conv_relu(2, True)
        conv_relu(3)
        pool(2, (2, 2), (2, 1), (0, 1))
        conv_relu(4, True)
        conv_relu(5)
        pool(3, (2, 2), (2, 1), (0, 1))
        conv_relu(6, True)
        self.rnn0 = nn.LSTM(512, nh, bidirectional=True)
        self.embedding0 = nn.Linear(nh * 2, nh)
        self.rnn1 = nn.LSTM(nh, nh, bidirectional=True)
        self.embedding1 = nn.Linear(nh * 2, nclass)

    def forward(self, x):
        x = x.permute(1, 2, 0).unsqueeze(1)                      # [B, 1, H, W]
        for name in self.order:
            x = getattr(self, name)(x)
        b, c, h, w = x.shape
        assert h == 1, "the height of conv must be 1"
        x = x.squeeze(2).permute(2, 0, 1)                        # [w, b, c]
        x = self.embedding0(self.rnn0(x)[0])
        return self.embedding1(self.rnn1(x)[0])


def crnn_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """CRNN's width arithmetic, layer by layer (kernel, stride, padding on the width)."""
    width = lengths
    for kernel, stride, padding in ((3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0), (3, 1, 1),
                                    (3, 1, 1), (2, 1, 1), (3, 1, 1), (3, 1, 1), (2, 1, 1),
                                    (2, 1, 0)):
        width = (width + 2 * padding - kernel) // stride + 1
    return width


class Tacotron2Encoder(nn.Module):
    """NVIDIA/tacotron2 model.py: Tacotron2.embedding then Encoder (batch-first ids)."""

    def __init__(self, n_symbols: int = 148, dim: int = 512):
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, dim)
        for i in range(3):
            setattr(self, f"conv{i}", nn.Conv1d(dim, dim, kernel_size=5, stride=1, padding=2))
            setattr(self, f"bn{i}", nn.BatchNorm1d(dim))
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.lstm = nn.LSTM(dim, dim // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, ids):
        x = self.embedding(ids).transpose(1, 2)                  # [B, C, T]
        for i in range(3):
            x = self.dropout(self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))))
        return self.lstm(x.transpose(1, 2))[0]


def tacotron2_encoder_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """The encoder packs with the text lengths as they are: each conv keeps time."""
    for kernel, padding in ((5, 2), (5, 2), (5, 2)):
        lengths = lengths + 2 * padding - (kernel - 1)
    return lengths


class Sentiment(nn.Module):
    """bentrevett/pytorch-sentiment-analysis, 2 - Upgraded Sentiment Analysis (batch first)."""

    def __init__(self, vocab: int = 25_000, emb: int = 100, hidden: int = 256):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb, padding_idx=1)
        self.rnn = nn.LSTM(emb, hidden, num_layers=2, bidirectional=True, dropout=0.5,
                           batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(hidden * 2, 1)

    def forward(self, ids):
        embedded = self.dropout(self.embedding(ids))
        _, (hidden, _) = self.rnn(embedded)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


class Unmix(nn.Module):
    """sigsep/open-unmix-pytorch openunmix/model.py OpenUnmix, between the input
    normalisation and the output affine (stereo, max_bin 1487, hidden 512)."""

    def __init__(self, channels: int = 2, max_bin: int = 1487, hidden: int = 512,
                 output_bins: int = 2049):
        super().__init__()
        self.fc1 = nn.Linear(channels * max_bin, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=3, bidirectional=True, dropout=0.4)
        self.fc2 = nn.Linear(hidden * 2, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, output_bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(output_bins * channels)

    def forward(self, x):
        frames, samples, _ = x.shape
        x = self.bn1(self.fc1(x.reshape(frames * samples, -1)))
        x = torch.tanh(x.reshape(frames, samples, -1))
        x = torch.cat([x, self.lstm(x)[0]], -1)
        x = torch.relu(self.bn2(self.fc2(x.reshape(-1, x.shape[-1]))))
        return self.bn3(self.fc3(x)).reshape(frames, samples, -1)


def unmix_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """open-unmix keeps every frame."""
    return lengths.clone()
