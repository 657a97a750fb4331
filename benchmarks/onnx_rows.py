"""onnxruntime on exported stacks against the fused PyTorch module, CPU, forward.

No target: the ratio tells users what export costs or gains. Both sides get the same
number of threads (torch's), the same weights and the same input; the PyTorch side runs
under `torch.no_grad()` in evaluation mode.
"""

from __future__ import annotations

from .harness import interleaved_samples, median, noise

# (name, T, inputs, H, layers, proj_size): the LSTM of models.SIZES, and a projected one
# (a Scan in the exported graph, since ONNX's LSTM operator has no projection).
SIZES = [("fastrnns", 100, 512, 512, 1, 0), ("tutorial", 100, 20, 50, 2, 0),
         ("projected", 100, 80, 512, 1, 128)]
BATCHES = (64, 1)


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def rows(rounds: int, sizes=SIZES, batches=BATCHES, min_seconds: float = 0.0) -> list:
    import onnxruntime as ort
    import torch

    from rnnspec import check_source
    from rnnspec.backends.onnx.export import build_model, match_weights
    from rnnspec.backends.torch.codegen import generate_source, load_source

    out = []
    for name, T, inputs, H, layers, proj in sizes:
        text = (f"stack Bench {{\n    input_size = {inputs}\n    lstm(hidden_size = {H}, "
                f"num_layers = {layers}, proj_size = {proj})\n}}\n")
        checked = check_source(text, "bench.rnn")
        torch.manual_seed(0)
        module = load_source(generate_source(checked), "bench.rnn").Bench().eval()
        stack = checked.stacks[0]
        model = build_model(stack, match_weights(stack, module.state_dict(), "the module"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        for B in batches:
            x = torch.randn(T, B, inputs)
            feed = {"input": x.numpy()}

            def run_torch(x=x, module=module):
                with torch.no_grad():
                    module(x)

            def run_onnx(feed=feed, session=session):
                session.run(None, feed)

            contenders = {"torch": run_torch, "onnxruntime": run_onnx}
            for run in contenders.values():
                run()
            samples = interleaved_samples(contenders, rounds, min_seconds)
            times = {who: median(values) for who, values in samples.items()}
            out.append({"size": name, "B": B, "graph": "Scan" if proj else "LSTM operator",
                        "torch_ms": times["torch"] * 1e3, "onnx_ms": times["onnxruntime"] * 1e3,
                        "ratio": times["onnxruntime"] / times["torch"],
                        "noise": noise(samples["torch"]), "rounds": len(samples["torch"])})
    return out
