"""Section 10: layers, time arithmetic and wiring — the checker's shapes, formulas and
diagnostics, and generated modules against plain PyTorch models written here."""

from __future__ import annotations

import json

import cli_process
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnspec import check_source
from rnnspec.check.report import json_document

SPEECH = """
let BINS = 161
stack Speech {
    input_size = BINS
    conv1 = conv2d(32, [41, 11], stride = [2, 2], padding = [20, 5])
    batch_norm()
    hardtanh(0.0, 20.0)
    conv2 = conv2d(32, [21, 11], stride = [2, 1], padding = [10, 5])
    batch_norm()
    hardtanh(0.0, 20.0)
    rnn1 = lstm(hidden_size = 32, bidirectional = true)
    batch_norm()
    rnn2 = lstm(hidden_size = 32, bidirectional = true)
    head = linear(29)
    log_softmax()
}
expect Speech {
    input = [200, 8, BINS]
    output[rnn1] = [100, 8, 64]
    output[conv2] = [100, 8, 32, 41]
    output = [100, 8, 29]
}
"""


def checked(text: str):
    result = check_source(text, "layers.rnn")
    return result


def codes(text: str) -> list[tuple[str, int]]:
    return [(d.code, d.span.line) for d in checked(text).diagnostics]


# ----------------------------------------------------------------------------- the checker


def test_speech_shapes_and_formulas():
    result = checked(SPEECH)
    assert result.ok, result.diagnostics
    assert all(e.ok for e in result.expectations)
    stack = result.stacks[0]
    by_name = {e.name: e for e in stack.entries}
    assert by_name["rnn1"].input_size == 32 * 41
    assert str(by_name["conv1"].time) == "(T - 1) // 2 + 1"
    assert [p.shape for p in by_name["conv1"].parameters] == [(32, 1, 41, 11), (32,)]
    assert [b.name for b in by_name["batch_norm1"].buffers] == [
        "running_mean", "running_var", "num_batches_tracked"]
    document = json_document([result])["stacks"][0]
    assert document["min_input_time"] == 1
    conv2 = next(e for e in document["entries"] if e["name"] == "conv2")
    assert conv2["kind"] == "conv2d"
    assert conv2["output"] == ["(T - 1) // 2 + 1", "B", 32, 41]
    assert conv2["arguments"]["kernel_size"] == [21, 11]
    assert [b["name"] for b in document["blocks"]] == ["rnn1", "rnn2"]
    json.dumps(document)


def test_shortest_input_is_reported_and_enforced_by_expect():
    text = """
stack S {
    input_size = 4
    conv = conv1d(8, 11)
    pool = max_pool1d(2)
    gru(hidden_size = 3)
}
expect S {
    input = [11, 2, 4]
    output = [0, 2, 3]
}
"""
    result = checked(text)
    assert result.stacks[0].min_input_time == 12  # (T - 10) // 2 >= 1
    found = [d for d in result.diagnostics if d.code == "E107"]
    assert found and "`pool`" in found[0].message and "= 0" in found[0].message
    assert "T >= 12" in found[0].help


def test_explicit_input_size_disagreeing_with_a_convolution_names_the_layer():
    text = SPEECH.replace("rnn1 = lstm(hidden_size = 32,", "rnn1 = lstm(input_size = 1024, "
                          "hidden_size = 32,")
    result = checked(text)
    (problem,) = [d for d in result.diagnostics if d.code == "E036"]
    assert problem.notes[0].message == "the features after `conv2` are 32 * 41 = 1312"
    assert problem.notes[0].span.line == text.split("\n").index(
        "    conv2 = conv2d(32, [21, 11], stride = [2, 1], padding = [10, 5])") + 1


@pytest.mark.parametrize(("entries", "code"), [
    ("conv2d(8, [200, 3])\n lstm(hidden_size = 4)", "E101"),  # window wider than 20 bins
    ("conv1d(6, 3, groups = 4)", "E102"),
    ("conv1d(6, 0)", "E021"),
    ("subsample(0)", "E021"),
    ("a = linear(3, from = b)\n b = linear(3)", "E103"),
    ("a = linear(3, from = nothing)", "E103"),
    ("a = subsample(2)\n b = linear(3, from = input)\n linear(2, from = concat(a, b))", "E104"),
    ("a = linear(3)\n b = linear(4, from = input)\n linear(2, from = sum(a, b))", "E104"),
    ("linear(3)\n embedding(10, 4)", "E105"),
    ("gru(hidden_size = 3)\n pool(mean)\n gru(hidden_size = 3)", "E106"),
    ("gru(hidden_size = 3)\n pool(mean)\n subsample(2)", "E106"),
    ("linear(3)\n pool(final)", "E106"),
    ("lstm(hidden_size = 3, bidirectional = true)\n pool(last)", "W010"),
    ("pool(median)", "E021"),
])
def test_diagnostics(entries, code):
    text = f"stack S {{\n input_size = 20\n {entries}\n}}\n"
    assert code in [c for c, _ in codes(text)], checked(text).diagnostics


@pytest.mark.parametrize(("entries", "warned"), [
    # PyTorch's constructors copied: the input size first
    ("linear(20, 5)", [3]),
    ("conv2d(1, 32, [41, 11])\n lstm(hidden_size = 4)", [3]),
    ("conv1d(20, 32, 48)", [3]),
    ("conv2d(8, 3)\n conv2d(8, 16, [21, 11])\n lstm(hidden_size = 4)", [4]),
    # rnnspec's order: a size that happens to equal the input, or PyTorch's values named
    ("linear(20)", []),
    ("linear(20, false)", []),
    ("conv1d(20, 3, 1, 1)", []),  # keeps its 20 channels: kernel 3, stride 1
    ("conv1d(20, 3, 2)", []),
    ("conv2d(1, [3, 3], [2, 2])\n lstm(hidden_size = 4)", []),
    ("conv2d(8, 3)\n conv2d(8, 3, 1, 1)\n lstm(hidden_size = 4)", []),
    ("conv2d(out_channels = 1, kernel_size = 32, stride = [41, 11])\n lstm(hidden_size = 4)",
     []),
    ("conv1d(6, 20, 48)", []),  # the first is not the input size
])
def test_arguments_in_pytorchs_order_are_warned_about(entries, warned):
    text = f"stack S {{\n input_size = 20\n {entries}\n}}\n"
    result = checked(text)
    found = [d for d in result.diagnostics if d.code == "W011"]
    assert [d.span.line for d in found] == warned, result.diagnostics
    for problem in found:
        assert problem.severity == "warning" and "PyTorch's `in_" in problem.message
        assert "drop the first argument" in problem.help


def test_embedding_takes_ids_and_no_input_size():
    text = "stack S {\n input_size = 3\n embedding(10, 4)\n gru(hidden_size = 2)\n}\n"
    assert ("E105", 2) in codes(text)
    result = checked("stack S {\n embedding(10, 4, padding_idx = 0)\n gru(hidden_size = 2)\n}\n"
                     "expect S {\n input = [7, 3]\n output = [7, 3, 2]\n}\n")
    assert result.ok and result.expectations[0].ok
    assert result.stacks[0].input == ("T", "B")


def test_pool_final_after_a_bidirectional_block():
    result = checked("stack S {\n batch_first = true\n embedding(50, 6)\n"
                     " lstm(hidden_size = 5, num_layers = 2, bidirectional = true)\n"
                     " pool(final)\n dropout(0.5)\n linear(1)\n}\n"
                     "expect S {\n input = [4, _]\n output = [4, 1]\n}\n")
    assert result.ok, result.diagnostics
    assert result.stacks[0].entries[2].output == ("B", 10)


def test_side_inputs_concat():
    result = checked("stack S {\n input_size = 6\n speaker = input(3, over = sequence)\n"
                     " a = linear(4)\n b = gru(hidden_size = 5)\n"
                     " linear(2, from = concat(a, b, speaker))\n}\n")
    assert result.ok, result.diagnostics
    assert result.stacks[0].entries[-1].input_size == 4 + 5 + 3


# ----------------------------------------------------------------------------- generated

torch = pytest.importorskip("torch")
nn = torch.nn

from rnnspec.backends.torch.codegen import generate_source, load_source  # noqa: E402

BACKENDS = ("fused", "explicit")


def build(text: str, name: str, backend: str):
    result = checked(text)
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend=backend), "layers.rnn")
    return getattr(module, name)()


def _randomise_norms(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


class SpeechReference(nn.Module):
    """deepspeech.pytorch's shape of network, written out by hand."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, (41, 11), (2, 2), (20, 5))
        self.batch_norm1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, (21, 11), (2, 1), (10, 5))
        self.batch_norm4 = nn.BatchNorm2d(32)
        self.rnn1 = nn.LSTM(1312, 32, bidirectional=True)
        self.batch_norm7 = nn.BatchNorm1d(64)
        self.rnn2 = nn.LSTM(64, 32, bidirectional=True)
        self.head = nn.Linear(64, 29)

    def forward(self, x):  # [T, B, F]
        x = x.permute(1, 2, 0).unsqueeze(1)
        x = torch.clamp(self.batch_norm1(self.conv1(x)), 0, 20)
        x = torch.clamp(self.batch_norm4(self.conv2(x)), 0, 20)
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).permute(2, 0, 1)
        x, _ = self.rnn1(x)
        x = self.batch_norm7(x.reshape(t * b, -1)).reshape(t, b, -1)
        x, _ = self.rnn2(x)
        return torch.log_softmax(self.head(x), -1)

    @staticmethod
    def output_lengths(lengths):  # deepspeech.pytorch's get_seq_lens over the two convs
        for kernel, stride, padding in ((11, 2, 5), (11, 1, 5)):
            lengths = (lengths + 2 * padding - (kernel - 1) - 1) // stride + 1
        return lengths


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_equals_its_reference(backend):
    torch.manual_seed(0)
    model = build(SPEECH, "Speech", backend).eval()
    reference = SpeechReference().eval()
    _randomise_norms(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(40, 3, 161)
    with torch.no_grad():
        output, (state1, state2) = model(x)
        torch.testing.assert_close(output, reference(x), atol=1e-5, rtol=1e-5)
        assert state1[0].shape == (2, 3, 32)
        lengths = torch.tensor([40, 23, 9])
        padded, _ = model(x, lengths=lengths)
        expected = SpeechReference.output_lengths(lengths)
        assert model.output_lengths(lengths).tolist() == expected.tolist()
        for b in range(3):
            alone, _ = model(x[: lengths[b], b : b + 1])
            torch.testing.assert_close(padded[: expected[b], b : b + 1], alone, atol=1e-5,
                                       rtol=1e-5)
            assert not padded[expected[b]:, b].any()
        unbatched, _ = model(x[:, 1])
        torch.testing.assert_close(unbatched, output[:, 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="conv1"):
        model.step(x[0])


SENTIMENT = """
stack Sentiment {
    batch_first = true
    embedding(100, 8, padding_idx = 1)
    lstm(hidden_size = 6, num_layers = 2, bidirectional = true)
    pool(final)
    dropout(0.5)
    linear(1)
}
"""


class SentimentReference(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding0 = nn.Embedding(100, 8, padding_idx=1)
        self.lstm1 = nn.LSTM(8, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.linear4 = nn.Linear(12, 1)

    def forward(self, ids, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding0(ids), lengths,
                                                   batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm1(packed)
        return self.linear4(torch.cat((h[-2], h[-1]), -1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sentiment_pool_final_equals_its_reference(backend):
    torch.manual_seed(1)
    model = build(SENTIMENT, "Sentiment", backend).eval()
    reference = SentimentReference().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    ids = torch.randint(0, 100, (4, 9))
    lengths = torch.tensor([9, 3, 7, 1])
    with torch.no_grad():
        output, (h, c) = model(ids, lengths=lengths)
        torch.testing.assert_close(output, reference(ids, lengths), atol=1e-5, rtol=1e-5)
    assert output.shape == (4, 1) and h.shape == (4, 4, 6)
    with pytest.raises(TypeError, match="no time"):
        model.output_lengths(lengths)


UNMIX = """
stack Unmix {
    input_size = 10
    speaker = input(3, over = sequence)
    fc1 = linear(8, bias = false)
    bn1 = batch_norm()
    tanh()
    blstm = lstm(hidden_size = 4, num_layers = 2, bidirectional = true)
    fc2 = linear(6, bias = false, from = concat(bn1, blstm, speaker))
    relu()
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_and_side_input_equal_a_reference(backend):
    torch.manual_seed(2)
    model = build(UNMIX, "Unmix", backend).eval()
    fc1, bn1 = nn.Linear(10, 8, bias=False), nn.BatchNorm1d(8)
    blstm, fc2 = nn.LSTM(8, 4, num_layers=2, bidirectional=True), nn.Linear(19, 6, bias=False)
    for m in (fc1, bn1, blstm, fc2):
        m.eval()
    _randomise_norms(bn1)
    state = {f"{name}.{k}": v for name, m in (("fc1", fc1), ("bn1", bn1), ("blstm", blstm),
                                              ("fc2", fc2)) for k, v in m.state_dict().items()}
    model.load_state_dict(state, strict=True)
    x, speaker = torch.randn(7, 2, 10), torch.randn(2, 3)
    with torch.no_grad():
        t, b = x.shape[:2]
        skip = bn1(fc1(x).reshape(t * b, 8)).reshape(t, b, 8)
        y, _ = blstm(torch.tanh(skip))
        expected = torch.relu(fc2(torch.cat((skip, y, speaker.expand(t, -1, -1)), -1)))
        output, _ = model(x, speaker=speaker)
        torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="speaker"):
            model(x)
        with pytest.raises(ValueError, match="speaker"):
            model(x, speaker=torch.randn(3, 3))


# ----------------------------------------------------------------------------- random chains

TIME_LAYERS = st.one_of(
    st.builds(lambda k, s, p, d: (f"conv1d(5, {k}, stride = {s}, padding = {p}, "
                                  f"dilation = {d})", ("conv", k, s, p, d)),
              st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
    st.builds(lambda k, s, c, m: (f"{m}_pool1d({k}, stride = {s}, padding = {k // 2}, "
                                  f"ceil_mode = {str(c).lower()})", (m, k, s, k // 2, c)),
              st.integers(1, 4), st.integers(1, 3), st.booleans(), st.sampled_from(["max", "avg"])),
    st.builds(lambda f: (f"subsample({f})", ("subsample", f)), st.integers(1, 3)),
    st.builds(lambda f: (f"stack_frames({f})", ("stack_frames", f)), st.integers(1, 3)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(TIME_LAYERS, min_size=1, max_size=3), backend=st.sampled_from(BACKENDS),
       data=st.data())
def test_random_time_chains_match_torch(chain, backend, data):
    entries = "\n".join(f"    {text}\n    relu()" for text, _ in chain)
    text = f"stack S {{\n    input_size = 5\n{entries}\n    gru(hidden_size = 3)\n}}\n"
    result = checked(text)
    assert result.ok, result.diagnostics
    stack = result.stacks[0]
    model = load_source(generate_source(result, backend=backend), "r.rnn").S().eval()
    shortest = stack.min_input_time
    for steps in range(max(1, shortest - 2), shortest + 12):
        x = torch.randn(steps, 2, 5)
        if steps < shortest:
            assert stack.output[0].evaluate(steps) < 1 or any(
                e.time.evaluate(steps) < 1 for e in stack.entries)
            continue
        with torch.no_grad():
            output, _ = model(x)
        assert output.shape[0] == stack.output[0].evaluate(steps)
        assert output.shape[1:] == (2, 3)
    steps = shortest + data.draw(st.integers(0, 10))
    x = torch.randn(steps, 3, 5)
    lengths = torch.tensor([steps, max(shortest, steps - 3), shortest])
    with torch.no_grad():
        padded, _ = model(x, lengths=lengths)
        out = model.output_lengths(lengths)
        for b in range(3):
            alone, _ = model(x[: lengths[b], b : b + 1])
            assert alone.shape[0] == out[b]
            torch.testing.assert_close(padded[: out[b], b : b + 1], alone, atol=1e-5,
                                       rtol=1e-5)


# ----------------------------------------------------------------------------- check --weights


def _weights_run(tmp_path, text: str, state: dict):

    spec = tmp_path / "net.rnn"
    spec.write_text(text)
    checkpoint = tmp_path / "net.pt"
    torch.save(state, checkpoint)
    return cli_process.run("check", "--json", "--weights", checkpoint, spec)


def test_weights_cover_layers_parameters_and_buffers(tmp_path):
    reference = SpeechReference()
    run = _weights_run(tmp_path, SPEECH, reference.state_dict())
    assert run.returncode == 0, run.stdout + run.stderr
    weights = json.loads(run.stdout)["weights"]
    assert "conv1.weight" in weights["matched"] and "batch_norm7.running_var" in weights["matched"]
    assert weights["missing"] == [] and weights["mismatched"] == []
    assert len(weights["matched"]) == len(reference.state_dict())


def test_weights_mismatch_is_explained_at_the_argument(tmp_path):
    text = SPEECH.replace("head = linear(29)", "head = linear(30)")
    run = _weights_run(tmp_path, text, SpeechReference().state_dict())
    assert run.returncode == 1
    diagnostics = json.loads(run.stdout)["diagnostics"]
    (found,) = [d for d in diagnostics if d["code"] == "E060"]
    assert "out_features = 29" in found["message"]
    line = text.split("\n").index("    head = linear(30)") + 1
    assert found["line"] == line


def test_weights_missing_layer(tmp_path):
    state = {k: v for k, v in SpeechReference().state_dict().items() if not k.startswith("head.")}
    run = _weights_run(tmp_path, SPEECH, state)
    diagnostics = json.loads(run.stdout)["diagnostics"]
    assert any(d["code"] == "E063" and "`head`" in d["message"] for d in diagnostics)


# ----------------------------------------------------------------------------- runtime rules

TAGGER = """
stack Tagger {
    batch_first = true
    input_size = 6
    proj = linear(5)
    norm = layer_norm()
    gelu()
    rnn = gru(hidden_size = 4, num_layers = 2)
    head = linear(3, from = concat(rnn, norm))
    log_softmax()
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_equals_forward_when_no_entry_changes_time(backend):
    torch.manual_seed(3)
    model = build(TAGGER, "Tagger", backend).eval()
    x = torch.randn(2, 5, 6)
    with torch.no_grad():
        output, h = model(x)
        state, steps = None, []
        for t in range(5):
            y, state = model.step(x[:, t], state)
            steps.append(y)
        torch.testing.assert_close(torch.stack(steps, 1), output, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state, h, atol=1e-5, rtol=1e-5)
        assert h.shape == (2, 2, 4)
        # each layer is PyTorch's own module under the entry's name
        assert isinstance(model.norm, nn.LayerNorm) and isinstance(model.head, nn.Linear)
        assert model.output_lengths([5, 2]).tolist() == [5, 2]


def test_a_length_that_falls_below_one_step_names_the_layer():
    text = "stack S {\n input_size = 3\n conv = conv1d(4, 5)\n gru(hidden_size = 2)\n}\n"
    model = build(text, "S", "fused")
    with pytest.raises(ValueError, match="`conv`"):
        model(torch.randn(9, 2, 3), lengths=[9, 3])
    with pytest.raises(ValueError, match="`conv`"):
        model.output_lengths([9, 3])
    assert model.output_lengths([9, 0, 5]).tolist() == [5, 0, 1]
    assert model.min_input_time == 5


def test_side_input_over_time_batch_first():
    text = ("stack S {\n batch_first = true\n input_size = 3\n pitch = input(2)\n"
            " gru(hidden_size = 4, from = concat(input, pitch))\n}\n")
    model = build(text, "S", "explicit").eval()
    x, pitch = torch.randn(2, 7, 3), torch.randn(2, 7, 2)
    with torch.no_grad():
        output, _ = model(x, pitch=pitch)
        joined = torch.cat((x, pitch), -1)
        reference = nn.GRU(5, 4, batch_first=True)
        reference.load_state_dict({k.split(".", 1)[1]: v for k, v in model.state_dict().items()})
        torch.testing.assert_close(output, reference(joined)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pitch"):
        model(x, pitch=torch.randn(7, 2, 2))


def test_locked_dropout_keeps_one_mask_per_sequence():
    text = "stack S {\n input_size = 50\n locked_dropout(0.5)\n}\n"
    result = checked(text)
    model = load_source(generate_source(result), "l.rnn").S().train()
    output, states = model(torch.ones(6, 3, 50))
    assert states == ()
    zero = output == 0
    assert zero.any() and (~zero).any()
    assert (zero == zero[0:1]).all()  # the same features dropped at every step


GRID_LAYERS = st.one_of(
    st.builds(lambda kf, kt, sf, st_, pf, pt: (
        f"conv2d(3, [{kf}, {kt}], stride = [{sf}, {st_}], padding = [{pf}, {pt}])"),
        st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
        st.integers(0, 1), st.integers(0, 1)),
    st.builds(lambda kind, k, s, c: (
        f"{kind}_pool2d([{k}, {k}], stride = [{s}, {s}], padding = [{k // 2}, {k // 2}], "
        f"ceil_mode = {str(c).lower()})"),
        st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 2), st.booleans()),
    st.just("batch_norm()"),
    st.just("relu()"),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(GRID_LAYERS, min_size=1, max_size=3), layout=st.booleans(),
       backend=st.sampled_from(BACKENDS))
def test_random_2d_runs_match_torch(chain, layout, backend):
    if not any(text.startswith(("conv2d", "max", "avg")) for text in chain):
        chain = ["conv2d(2, [2, 2])", *chain]
    if layout:  # `layout = time_first` on every 2-D layer of the run
        chain = [text[:-1] + ", layout = time_first)" if text.startswith(("conv2d", "max",
                                                                           "avg")) else text
                 for text in chain]
    entries = "\n".join(f"    {text}" for text in chain)
    text = f"stack S {{\n    input_size = 9\n{entries}\n    gru(hidden_size = 3)\n}}\n"
    result = checked(text)
    if not result.ok:  # a window wider than the bins: an error at the argument, say so
        assert {d.code for d in result.diagnostics} <= {"E101", "E021"}, result.diagnostics
        return
    stack = result.stacks[0]
    model = load_source(generate_source(result, backend=backend), "g.rnn").S().eval()
    _randomise_norms(model)
    shortest = stack.min_input_time
    for steps in range(shortest, shortest + 6):
        with torch.no_grad():
            output, _ = model(torch.randn(steps, 2, 9))
        assert tuple(output.shape) == (stack.output[0].evaluate(steps), 2, 3)
    steps = shortest + 4
    x = torch.randn(steps, 3, 9)
    lengths = torch.tensor([steps, shortest + 1, shortest])
    with torch.no_grad():
        padded, _ = model(x, lengths=lengths)
        out = model.output_lengths(lengths)
        for b in range(3):
            alone, _ = model(x[: lengths[b], b : b + 1])
            assert alone.shape[0] == out[b]
            torch.testing.assert_close(padded[: out[b], b : b + 1], alone, atol=1e-5,
                                       rtol=1e-5)


def test_time_first_layout_is_espnet_conv2d_subsampling():
    """ESPnet's Conv2dSubsampling: Conv2d on [B, 1, T, F], pairs read [time, features]."""
    text = ("stack S {\n input_size = 20\n"
            " conv = conv2d(4, [3, 5], stride = [2, 2], layout = time_first)\n relu()\n"
            " out = linear(6)\n}\n")
    result = checked(text)
    assert result.ok, result.diagnostics
    layer = result.stacks[0].entries[0]
    assert layer.parameters[0].shape == (4, 1, 3, 5)  # [out, C, kt, kf]
    assert str(layer.time) == "(T - 3) // 2 + 1"
    model = load_source(generate_source(result), "t.rnn").S().eval()
    conv, out = nn.Conv2d(1, 4, (3, 5), stride=(2, 2)), nn.Linear(4 * 8, 6)
    model.load_state_dict({**{f"conv.{k}": v for k, v in conv.state_dict().items()},
                           **{f"out.{k}": v for k, v in out.state_dict().items()}})
    x = torch.randn(11, 2, 20)
    with torch.no_grad():
        y = torch.relu(conv(x.permute(1, 0, 2).unsqueeze(1)))  # [B, C, T', F']
        b, c, t, f = y.shape
        expected = out(y.transpose(1, 2).reshape(b, t, c * f)).transpose(0, 1)
        torch.testing.assert_close(model(x)[0], expected, atol=1e-5, rtol=1e-5)


def test_bad_inputs_to_a_network_are_value_errors_that_say_what_is_wrong():
    model = build(SPEECH, "Speech", "fused")
    for bad, words in [(torch.randn(10, 2, 160), "161"), ([1, 2], "tensor"),
                       (torch.randn(10), "[T, B, 161]")]:
        with pytest.raises(ValueError, match=words):
            model(bad)
    x = torch.randn(40, 2, 161)
    with pytest.raises(ValueError, match=r"0\.\.40"):
        model(x, lengths=[41, 3])
    one_per_block = r"hx must be a tuple or list \(rnn1, rnn2\), one entry per block; got a tuple"
    with pytest.raises(ValueError, match=one_per_block):
        model(x, hx=(None,))
    with pytest.raises(ValueError, match=r"h0\[rnn1\]"):
        model(x, hx=((torch.zeros(1, 2, 32), torch.zeros(2, 2, 32)), None))
    ids = build(SENTIMENT, "Sentiment", "fused")
    with pytest.raises(ValueError, match="integer ids"):
        ids(torch.randn(2, 5))
    with pytest.raises(ValueError, match="lengths must be integers"):
        model.output_lengths([1.5])
    with pytest.raises(TypeError, match="pool2"):
        ids.output_lengths([3])


def test_step_takes_side_inputs_as_keywords():
    text = ("stack S {\n batch_first = true\n input_size = 3\n pitch = input(2)\n"
            " who = input(4, over = sequence)\n"
            " gru(hidden_size = 5, from = concat(input, pitch, who))\n linear(2)\n}\n")
    model = build(text, "S", "fused").eval()
    x, pitch, who = torch.randn(2, 6, 3), torch.randn(2, 6, 2), torch.randn(2, 4)
    with torch.no_grad():
        output, h = model(x, pitch=pitch, who=who)
        state, steps = None, []
        for t in range(6):
            y, state = model.step(x[:, t], state, pitch=pitch[:, t], who=who)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, h, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_very_long_entry_names_generate_valid_code(backend):
    name = "block_" + "9" * 300
    text = (f"stack S {{\n input_size = 3\n linear(4)\n {name} = lstm(hidden_size = 2)\n"
            f" {name}_head = linear(2, from = {name})\n}}\n")
    result = checked(text)
    assert result.ok, result.diagnostics
    source = generate_source(result, backend=backend)
    compile(source, "long.rnn", "exec")
    model = load_source(source, "long.rnn").S()
    assert model(torch.randn(5, 2, 3))[0].shape == (5, 2, 2)


def test_language_server_hover_shows_a_layer_and_its_time_formula():
    from rnnspec.tools.lsp.analysis import Analysis, hover_text

    analysis = Analysis(SPEECH, "layers.rnn")
    lines = SPEECH.split("\n")
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("conv1 ="))
    text, _ = hover_text(analysis, row + 1, 6)
    assert "**conv1**: `conv2d`, 161 → 2592 (32 channels × 81 bins)" in text
    assert "`[32, 1, 41, 11]`" in text and "`[(T - 1) // 2 + 1, B, 32, 81]`" in text
    assert "time `(T - 1) // 2 + 1` (reads `T`)" in text
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("rnn1 ="))
    text, _ = hover_text(analysis, row + 1, 6)
    assert "**rnn1**: `lstm`" in text and "`[(T - 1) // 2 + 1, B, 64]`" in text
    short = Analysis("stack S {\n input_size = 3\n conv1d(4, 9)\n}\n", "s.rnn")
    text, _ = hover_text(short, 1, 8)
    assert "needs T >= 9" in text and "0 blocks, 1 layer," in text
