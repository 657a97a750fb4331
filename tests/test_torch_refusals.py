"""Argument values that PyTorch refuses are refused by `check` (issue 19): for each, the
spec's error is located at the argument, and the torch module built with the same value
(constructor, then a forward in training mode on a tiny input) refuses it too. The table is
the audit of every built-in cell's and layer kind's arguments: a value torch accepts is not
in it (rnnspec's own stricter rules, such as `linear(0)` or a negative `layer_norm` eps,
are tested where they are decided)."""

from __future__ import annotations

import pytest

from rnnspec.check.checker import check_text

torch = pytest.importorskip("torch")
nn = torch.nn

SEQUENCE = (1, 4, 12)  # [B, C, T]: the 4 features as channels, as conv1d reads them
MAP = (1, 1, 4, 12)  # [B, C, F, T]: a 2-D run's map of one channel


def _lstm(*args, **kwargs):
    return nn.LSTM(*args, **kwargs)(torch.zeros(5, 1, args[0]))


def _gru(*args, **kwargs):
    return nn.GRU(*args, **kwargs)(torch.zeros(5, 1, args[0]))


def _rnn(*args, **kwargs):
    return nn.RNN(*args, **kwargs)(torch.zeros(5, 1, args[0]))


def _on(module, shape):
    return module.train()(torch.randn(*shape))


# (the entry written in the spec, the code, the text of the argument the error points at,
#  what torch does with the same value)
CASES = [
    ("lstm(hidden_size = 0)", "E021", "0", lambda: _lstm(4, 0)),
    ("gru(hidden_size = 4, num_layers = 0)", "E021", "0", lambda: _gru(4, 4, 0)),
    ("rnn(hidden_size = 4, num_layers = 2, dropout = 1.5)", "E021", "1.5",
     lambda: _rnn(4, 4, 2, dropout=1.5)),
    ("lstm(hidden_size = 4, num_layers = 2, dropout = -0.1)", "E021", "-0.1",
     lambda: _lstm(4, 4, 2, dropout=-0.1)),
    ("lstm(hidden_size = 4, proj_size = 4)", "E037", None, lambda: _lstm(4, 4, proj_size=4)),
    ("lstm(hidden_size = 4, proj_size = 9)", "E037", None, lambda: _lstm(4, 4, proj_size=9)),
    ("lstm(hidden_size = 4, proj_size = -1)", "E021", "-1", lambda: _lstm(4, 4, proj_size=-1)),
    ("rnn(hidden_size = 4, nonlinearity = sigmoid)", "E021", "sigmoid",
     lambda: _rnn(4, 4, nonlinearity="sigmoid")),
    ("dropout(1.5)", "E021", "1.5", lambda: _on(nn.Dropout(1.5), (5, 1, 4))),
    ("dropout(-0.5)", "E021", "-0.5", lambda: _on(nn.Dropout(-0.5), (5, 1, 4))),
    ("locked_dropout(p = 2.0)", "E021", "2.0", lambda: nn.functional.dropout(
        torch.ones(4), 2.0)),
    ("batch_norm(eps = 0)", "E021", "eps = 0",
     lambda: _on(nn.BatchNorm1d(4, eps=0.0), (3, 4))),
    ("batch_norm(eps = -1e-5)", "E021", "eps = -1e-5",
     lambda: _on(nn.BatchNorm1d(4, eps=-1e-5), (3, 4))),
    ("hardtanh(1.0, -1.0)", "E021", "-1.0", lambda: nn.Hardtanh(1.0, -1.0)),
    ("hardtanh(0.5, 0.5)", "E021", "0.5", lambda: nn.Hardtanh(0.5, 0.5)),
    ("hardtanh(min_val = 2.0)", "E021", "min_val = 2.0", lambda: nn.Hardtanh(min_val=2.0)),
    ("conv1d(8, 0)", "E021", "0", lambda: _on(nn.Conv1d(4, 8, 0), SEQUENCE)),
    ("conv1d(8, 3, stride = 0)", "E021", "0", lambda: _on(nn.Conv1d(4, 8, 3, stride=0),
                                                          SEQUENCE)),
    ("conv1d(8, 3, padding = -1)", "E021", "-1", lambda: _on(nn.Conv1d(4, 8, 3, padding=-1),
                                                             SEQUENCE)),
    ("conv1d(8, 3, dilation = 0)", "E021", "0", lambda: _on(nn.Conv1d(4, 8, 3, dilation=0),
                                                            SEQUENCE)),
    ("conv1d(8, 3, groups = 0)", "E021", "0", lambda: nn.Conv1d(4, 8, 3, groups=0)),
    ("conv1d(6, 3, groups = 3)", "E102", "groups = 3", lambda: nn.Conv1d(4, 6, 3, groups=3)),
    ("conv1d(6, 3, groups = 4)", "E102", "groups = 4", lambda: nn.Conv1d(4, 6, 3, groups=4)),
    ("max_pool1d(0)", "E021", "0", lambda: _on(nn.MaxPool1d(0), SEQUENCE)),
    ("max_pool1d(3, stride = 0)", "E021", "0", lambda: _on(nn.MaxPool1d(3, stride=0),
                                                           SEQUENCE)),
    ("max_pool1d(3, padding = 2)", "E021", "padding = 2",
     lambda: _on(nn.MaxPool1d(3, padding=2), SEQUENCE)),
    ("avg_pool1d(2, padding = 2)", "E021", "padding = 2",
     lambda: _on(nn.AvgPool1d(2, padding=2), SEQUENCE)),
    ("avg_pool1d(3, padding = -1)", "E021", "-1", lambda: _on(nn.AvgPool1d(3, padding=-1),
                                                              SEQUENCE)),
    ("conv2d(4, [3, 3], stride = [1, 0])", "E021", "[1, 0]",
     lambda: _on(nn.Conv2d(1, 4, 3, stride=(1, 0)), MAP)),
    ("conv2d(4, [0, 3])", "E021", "[0, 3]", lambda: _on(nn.Conv2d(1, 4, (0, 3)), MAP)),
    ("conv2d(4, 3, padding = [-1, 0])", "E021", "[-1, 0]",
     lambda: _on(nn.Conv2d(1, 4, 3, padding=(-1, 0)), MAP)),
    ("conv2d(4, 3, groups = 2)", "E102", "groups = 2", lambda: nn.Conv2d(1, 4, 3, groups=2)),
    ("max_pool2d(3, padding = [2, 0])", "E021", "padding = [2, 0]",
     lambda: _on(nn.MaxPool2d(3, padding=(2, 0)), MAP)),
    ("avg_pool2d([2, 2], stride = [0, 1])", "E021", "[0, 1]",
     lambda: _on(nn.AvgPool2d(2, stride=(0, 1)), MAP)),
]
IDS = [case[0] for case in CASES]


def _spec(entry: str) -> str:
    return f"stack S {{\n    input_size = 4\n    {entry}\n    gru(hidden_size = 4)\n}}\n"


@pytest.mark.parametrize(("entry", "code", "argument", "build"), CASES, ids=IDS)
def test_check_refuses_what_torch_refuses(entry, code, argument, build):
    text = _spec(entry)
    result = check_text(text, "spec.rnn")
    (problem,) = result.diagnostics
    assert problem.code == code and problem.span.line == 3 and not result.ok
    if argument is not None:  # the caret is under the argument, nothing else
        line = text.split("\n")[2]
        assert line[problem.span.column - 1:problem.span.end_column - 1] == argument
    with pytest.raises((ValueError, RuntimeError, AssertionError)):
        build()


def test_an_embedding_index_torch_refuses_is_refused():
    for index in (5, -6):
        text = (f"stack S {{\n    embedding(5, 4, padding_idx = {index})\n"
                "    gru(hidden_size = 4)\n}\n")
        (problem,) = check_text(text, "spec.rnn").diagnostics
        assert problem.code == "E021" and problem.span.line == 2
        with pytest.raises(AssertionError):
            nn.Embedding(5, 4, padding_idx=index)


def test_a_stack_input_size_torch_refuses_is_refused():
    text = "stack S {\n    input_size = 0\n    lstm(hidden_size = 4)\n}\n"
    (problem,) = check_text(text, "spec.rnn").diagnostics
    assert (problem.code, problem.span.line) == ("E021", 2)
    with pytest.raises(ValueError):
        nn.LSTM(0, 4)


@pytest.mark.parametrize(("init", "build"), [
    ("uniform(1, 0)", lambda t: nn.init.uniform_(t, 1.0, 0.0)),
    ("normal(0, -1)", lambda t: nn.init.normal_(t, 0.0, -1.0)),
])
def test_an_initialiser_torch_refuses_is_refused(init, build):
    text = (f"cell C {{\n    state h[hidden_size]\n    param w[hidden_size, input_size] = "
            f"{init}\n    h = tanh(w @ x)\n}}\n"
            "stack S {\n    input_size = 4\n    C(hidden_size = 4)\n}\n")
    (problem,) = check_text(text, "spec.rnn").diagnostics
    assert (problem.code, problem.span.line) == ("E076", 3)
    with pytest.raises(RuntimeError):
        build(torch.empty(4, 4))


@pytest.mark.parametrize("p", ["1.5", "-0.5"])
def test_a_cell_dropout_torch_refuses_is_refused(p):
    text = ("cell C {\n    state h[hidden_size]\n    param w[hidden_size, input_size]\n"
            f"    h = tanh(dropout(w @ x, {p}))\n}}\n"
            "stack S {\n    input_size = 4\n    C(hidden_size = 4)\n}\n")
    problems = check_text(text, "spec.rnn").diagnostics
    assert [d.code for d in problems] == ["E021"]
    with pytest.raises(ValueError):
        nn.functional.dropout(torch.ones(4), float(p))


@pytest.mark.parametrize(("entry", "build"), [
    ("batch_norm(eps = 1e-30)", lambda: _on(nn.BatchNorm1d(4, eps=1e-30), (3, 4))),
    ("hardtanh(-2.0, 2.0)", lambda: nn.Hardtanh(-2.0, 2.0)),
    ("max_pool1d(3, padding = 1)", lambda: _on(nn.MaxPool1d(3, padding=1), SEQUENCE)),
    ("conv1d(8, 3, groups = 4)", lambda: _on(nn.Conv1d(4, 8, 3, groups=4), SEQUENCE)),
    ("lstm(hidden_size = 4, proj_size = 3)", lambda: _lstm(4, 4, proj_size=3)),
    ("rnn(hidden_size = 4, num_layers = 2, dropout = 1.0)", lambda: _rnn(4, 4, 2, dropout=1.0)),
])
def test_values_torch_accepts_are_accepted(entry, build):
    """The boundaries: just inside what torch takes, check is clean and torch runs."""
    assert check_text(_spec(entry), "spec.rnn").diagnostics == []
    build()
