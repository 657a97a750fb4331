"""The `rnnspec` command line: `check` (with `--weights`), `generate`, `infer`, `export`,
`fmt`, `lsp` and `draw`.

Exit status: 0 when nothing is wrong (warnings allowed), 1 when a spec has errors,
2 for usage and I/O problems (a missing or unreadable file, a file that is not UTF-8,
an output file that cannot be written or must not be overwritten).
"""

from __future__ import annotations

import argparse
import os
import sys

from rnnspec import __version__

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _use_colour(choice: str, stream) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnspec",
        description="Check .rnn specs of recurrent PyTorch stacks and generate their modules.",
    )
    parser.add_argument("--version", action="version", version=f"rnnspec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="derive every shape and check the expectations")
    check.add_argument("files", nargs="+", metavar="FILE", help=".rnn spec files")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--verify", action="store_true",
                       help="also build every stack with torch on the meta device and "
                            "confirm the derived shapes (imports torch)")
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                       help="colour the text report (auto: on a terminal, unless NO_COLOR)")
    check.add_argument("--weights", metavar="CKPT",
                       help="compare a checkpoint (.safetensors, or a torch.save file) with "
                            "a stack; only its names and shapes are read")
    check.add_argument("--stack", metavar="NAME",
                       help="the stack --weights is compared with (needed when the file has "
                            "several)")
    check.add_argument("--prefix", metavar="P",
                       help="the checkpoint's key prefix before the block names (before the "
                            "parameter names for a one-block stack); detected when omitted")

    generate = commands.add_parser("generate", help="write a PyTorch module for a spec")
    generate.add_argument("file", metavar="FILE", help=".rnn spec file")
    generate.add_argument("-o", "--output", default="-", metavar="OUT.py",
                          help="where to write the module; `-` (the default) for stdout")
    generate.add_argument("--backend", choices=("fused", "explicit"), default="fused",
                          help="fused: nn.RNN/nn.LSTM/nn.GRU modules (cuDNN on CUDA); "
                               "explicit: the cell equations written out")
    generate.add_argument("--force", action="store_true",
                          help="overwrite OUT.py even if rnnspec did not generate it")
    generate.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                          help="colour the diagnostics")

    export = commands.add_parser("export", help="write an ONNX model of a stack")
    export.add_argument("file", metavar="FILE", help=".rnn spec file")
    export.add_argument("--stack", metavar="NAME",
                        help="the stack to export (may be omitted when the file has one)")
    export.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                        help="where to write the ONNX model")
    export.add_argument("--weights", metavar="CKPT",
                        help="parameters: a state dict saved with torch.save or a "
                             ".safetensors file, keys `<block>.<parameter>`; without it, "
                             "the generated module's initialisation with --seed")
    export.add_argument("--seed", type=int, default=0,
                        help="torch.manual_seed before initialising (default 0)")
    export.add_argument("--opset", type=int, default=None, metavar="N",
                        help="the ONNX opset (default 17; 14 to 21)")
    export.add_argument("--initial-states", action="store_true",
                        help="take h0.<block> (and c0.<block>) as graph inputs; without "
                             "it every block starts from zeros")
    export.add_argument("--lengths", action="store_true",
                        help="take `lengths` ([B] int64) as a graph input: a padded batch, "
                             "as forward(input, lengths=...) runs it")
    export.add_argument("--force", action="store_true",
                        help="overwrite OUT.onnx even if rnnspec did not write it")
    export.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the diagnostics")
    fmt = commands.add_parser("fmt", help="rewrite specs in the canonical layout")
    fmt.add_argument("files", nargs="+", metavar="FILE",
                     help=".rnn spec files (`-`: read stdin, write stdout)")
    fmt.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 and name each file that would change")
    fmt.add_argument("--diff", action="store_true",
                     help="write nothing; print a unified diff of the changes")
    fmt.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                     help="colour the diagnostics")

    commands.add_parser("lsp", help="serve the Language Server Protocol over stdio "
                                    "(needs the `lsp` extra: pygls, lsprotocol)")

    draw = commands.add_parser("draw", help="draw the stacks of a spec as an SVG picture")
    draw.add_argument("file", metavar="FILE", help=".rnn spec file")
    draw.add_argument("--stack", metavar="NAME", help="draw only this stack (default: all)")
    draw.add_argument("-o", "--output", default="-", metavar="OUT.svg",
                      help="where to write the SVG; `-` (the default) for stdout")
    draw.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                      help="colour the diagnostics")
    infer = commands.add_parser("infer", help="write a spec describing a checkpoint's "
                                              "recurrent modules")
    infer.add_argument("checkpoint", metavar="CKPT", help=".safetensors or torch.save file")
    infer.add_argument("-o", "--output", default="-", metavar="OUT.rnn",
                       help="where to write the spec; `-` (the default) for stdout")
    infer.add_argument("--cells", metavar="FILE",
                       help="a spec whose cells describe the checkpoint's other modules")
    infer.add_argument("--force", action="store_true",
                       help="overwrite OUT.rnn even if `rnnspec infer` did not write it")
    return parser


def _exit_status(results) -> int:
    if any(not r.readable for r in results):
        return EXIT_USAGE
    if any(not r.ok for r in results):
        return EXIT_ERRORS
    return EXIT_OK


def _usage_error(message: str) -> int:
    sys.stderr.write(f"rnnspec: error: {message}\n")
    return EXIT_USAGE


def run_check(args) -> int:
    from rnnspec.check.checker import check_path
    from rnnspec.check.report import json_report, text_report

    tensors = None
    if args.weights is not None:
        if len(args.files) != 1:
            return _usage_error("--weights compares a checkpoint with one spec file")
        from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

        try:
            tensors = read_checkpoint(args.weights)
        except CheckpointError as exc:
            return _usage_error(str(exc))
    elif args.stack is not None or args.prefix is not None:
        return _usage_error("--stack and --prefix go with --weights")
    results = [check_path(path) for path in args.files]
    sections, extra = [], {}
    if tensors is not None and results[0].readable:
        from rnnspec.tools.checkpoints.compare import attach, stack_for

        result = results[0]
        stack, why = stack_for(result, args.stack)
        if stack is None and result.ok:
            return _usage_error(why)
        if stack is not None:  # else the stack has errors, which the report shows
            comparison = attach(result, stack, tensors, args.weights, args.prefix)
            sections.append(comparison.text())
            extra["weights"] = comparison.to_json()
    if args.verify and all(r.ok for r in results):
        try:
            from rnnspec.backends.torch.verify import verify_results
        except ImportError:  # pragma: no cover - torch is an extra
            sys.stderr.write("error: --verify needs torch: pip install 'rnnspec[torch]'\n")
            return EXIT_USAGE
        verify_results(results)
    if args.json:
        sys.stdout.write(json_report(results, extra))
    else:
        from rnnspec.language.diagnostics import Style

        style = Style(_use_colour(args.color, sys.stdout))
        sys.stdout.write(text_report(results, style, sections))
    return _exit_status(results)


def run_generate(args) -> int:
    from rnnspec.check.checker import check_path
    from rnnspec.language.diagnostics import Style, render

    result = check_path(args.file)
    style = Style(_use_colour(args.color, sys.stderr))
    sources = {result.path: result.text.split("\n")}
    for diagnostic in result.diagnostics:
        sys.stderr.write(render(diagnostic, sources, style) + "\n\n")
    if not result.ok:
        return _exit_status([result])
    from rnnspec.backends.torch.codegen import OutputError, generate_source, write_output

    source = generate_source(result, backend=args.backend)
    if args.output == "-":
        sys.stdout.write(source)
        return EXIT_OK
    try:
        write_output(args.output, source, force=args.force)
    except OutputError as exc:
        sys.stderr.write(f"{style.error('error')}: {exc}\n")
        return EXIT_USAGE
    return EXIT_OK


def run_export(args) -> int:
    from rnnspec.backends.onnx.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError
    from rnnspec.check.checker import check_path
    from rnnspec.language.diagnostics import Style, render

    style = Style(_use_colour(args.color, sys.stderr))
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        sys.stderr.write(f"{style.error('error')}: opset {opset} is not supported: rnnspec "
                         f"writes opsets {MIN_OPSET} to {MAX_OPSET}\n")
        return EXIT_USAGE
    result = check_path(args.file)
    sources = {result.path: result.text.split("\n")}
    for diagnostic in result.diagnostics:
        sys.stderr.write(render(diagnostic, sources, style) + "\n\n")
    if not result.ok:
        return _exit_status([result])
    from rnnspec.backends.onnx.export import export

    try:
        stack = export(result, args.output, stack_name=args.stack, weights=args.weights,
                       opset=opset, seed=args.seed, initial_states=args.initial_states,
                       lengths=args.lengths, force=args.force)
    except ExportError as exc:
        sys.stderr.write(f"{style.error('error')}: {exc}\n")
        if exc.help:
            sys.stderr.write(f"{style.note('help')}: {exc.help}\n")
        return exc.status
    sys.stderr.write(f"wrote `{args.output}`: stack `{stack.name}`, opset {opset}\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return run_check(args)
        if args.command == "export":
            return run_export(args)
        if args.command == "fmt":
            from rnnspec.language.diagnostics import Style
            from rnnspec.tools.fmt import run_fmt

            return run_fmt(args, Style(_use_colour(args.color, sys.stderr)))
        if args.command == "draw":
            from rnnspec.language.diagnostics import Style
            from rnnspec.tools.draw import run_draw

            return run_draw(args, Style(_use_colour(args.color, sys.stderr)))
        if args.command == "lsp":
            from rnnspec.tools.lsp.server import serve

            return serve()
        if args.command == "infer":
            from rnnspec.tools.checkpoints.infer import run_infer

            return run_infer(args)
        return run_generate(args)
    except BrokenPipeError:
        # The reader went away (`rnnspec check x.rnn | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The console script: `main`, then an immediate exit.

    Everything the command has to say is written and flushed by then; skipping the
    interpreter's teardown (freeing every object of Lark's tables one by one) takes about a
    fifth off `rnnspec check`'s start-to-finish time, which is what a check on every save
    costs. `main` itself returns normally, for callers inside Python.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    entry()
