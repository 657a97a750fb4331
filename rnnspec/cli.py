"""The `rnnspec` command line: `check` (with `--weights`), `generate` and `infer`.

Exit status: 0 when nothing is wrong (warnings allowed), 1 when a spec has errors,
2 for usage and I/O problems (a missing or unreadable file, a file that is not UTF-8,
an output file that cannot be written or must not be overwritten).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__

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
    from .check import check_path
    from .report import json_report, text_report

    tensors = None
    if args.weights is not None:
        if len(args.files) != 1:
            return _usage_error("--weights compares a checkpoint with one spec file")
        from .checkpoints import CheckpointError, read_checkpoint

        try:
            tensors = read_checkpoint(args.weights)
        except CheckpointError as exc:
            return _usage_error(str(exc))
    elif args.stack is not None or args.prefix is not None:
        return _usage_error("--stack and --prefix go with --weights")
    results = [check_path(path) for path in args.files]
    sections, extra = [], {}
    if tensors is not None and results[0].readable:
        from .weights import attach, stack_for

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
            from .verify import verify_results
        except ImportError:  # pragma: no cover - torch is an extra
            sys.stderr.write("error: --verify needs torch: pip install 'rnnspec[torch]'\n")
            return EXIT_USAGE
        verify_results(results)
    if args.json:
        sys.stdout.write(json_report(results, extra))
    else:
        from .diagnostics import Style

        style = Style(_use_colour(args.color, sys.stdout))
        sys.stdout.write(text_report(results, style, sections))
    return _exit_status(results)


def run_generate(args) -> int:
    from .check import check_path
    from .diagnostics import Style, render

    result = check_path(args.file)
    style = Style(_use_colour(args.color, sys.stderr))
    sources = {result.path: result.text.split("\n")}
    for diagnostic in result.diagnostics:
        sys.stderr.write(render(diagnostic, sources, style) + "\n\n")
    if not result.ok:
        return _exit_status([result])
    from .codegen import OutputError, generate_source, write_output

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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return run_check(args)
        if args.command == "infer":
            from .infer import run_infer

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
