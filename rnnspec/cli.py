"""The `rnnspec` command line: `check` (with `--weights`), `generate`, `infer`, `export`,
`fmt`, `lsp` and `draw`.

Exit status: 0 when nothing is wrong (warnings allowed), 1 when a spec has errors,
2 for usage and I/O problems (a missing or unreadable file, a file that is not UTF-8,
an output file that cannot be written or must not be overwritten).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from rnnspec import __version__

if TYPE_CHECKING:
    import argparse

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _use_colour(choice: str, stream) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


# ----------------------------------------------------------------------------- options
# The options several subcommands share, declared once; each subcommand names its own file
# kind and verb, so the help reads as before.


def _files(parser, what: str = ".rnn spec files") -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=what)


def _file(parser) -> None:
    parser.add_argument("file", metavar="FILE", help=".rnn spec file")


def _output(parser, metavar: str, thing: str, *, required: bool = False) -> None:
    """`-o/--output`: `-` (stdout) by default, unless the output is a binary file."""
    if required:
        parser.add_argument("-o", "--output", required=True, metavar=metavar,
                            help=f"where to write {thing}")
    else:
        parser.add_argument("-o", "--output", default="-", metavar=metavar,
                            help=f"where to write {thing}; `-` (the default) for stdout")


def _force(parser, metavar: str, tool: str = "rnnspec", verb: str = "write") -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"overwrite {metavar} even if {tool} did not {verb} it")


def _color(parser, what: str = "the diagnostics") -> None:
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help=f"colour {what}")


def _stack(parser, help: str) -> None:
    parser.add_argument("--stack", metavar="NAME", help=help)


def _command(commands, name: str, help: str, run) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help)
    parser.set_defaults(run=run)
    return parser


# ----------------------------------------------------------------------------- subcommands


def _add_check(commands) -> None:
    check = _command(commands, "check", "derive every shape and check the expectations",
                     run_check)
    _files(check)
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--verify", action="store_true",
                       help="also build every stack with torch on the meta device and "
                            "confirm the derived shapes (imports torch)")
    _color(check, "the text report (auto: on a terminal, unless NO_COLOR)")
    check.add_argument("--weights", metavar="CKPT",
                       help="compare a checkpoint (.safetensors, or a torch.save file) with "
                            "a stack; only its names and shapes are read")
    _stack(check, "the stack --weights is compared with (needed when the file has several)")
    check.add_argument("--prefix", metavar="P",
                       help="the checkpoint's key prefix before the block names (before the "
                            "parameter names for a one-block stack); detected when omitted")


def _add_generate(commands) -> None:
    from rnnspec import backends

    generate = _command(commands, "generate", "write a PyTorch module for a spec",
                        run_generate)
    _file(generate)
    _output(generate, "OUT.py", "the module")
    module_backends = backends.backends(backends.MODULE)
    generate.add_argument("--backend", choices=tuple(b.name for b in module_backends),
                          default=backends.default(backends.MODULE).name,
                          help="; ".join(f"{b.name}: {b.help}" for b in module_backends))
    _force(generate, "OUT.py", verb="generate")
    _color(generate)


def _add_export(commands) -> None:
    from rnnspec import backends

    export = _command(commands, "export", backends.default(backends.ONNX).help, run_export)
    _file(export)
    _stack(export, "the stack to export (may be omitted when the file has one)")
    _output(export, "OUT.onnx", "the ONNX model", required=True)
    export.add_argument("--weights", metavar="CKPT",
                        help="parameters: a checkpoint as check --weights reads it (a "
                             "state dict saved with torch.save, nested or not, or a "
                             ".safetensors file; keys matched as check --weights matches "
                             "them); without it, the generated module's initialisation "
                             "with --seed")
    export.add_argument("--prefix", metavar="P",
                        help="with --weights: the checkpoint's key prefix, as for check "
                             "--weights; detected when omitted")
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
    _force(export, "OUT.onnx")
    _color(export)


def _add_tools(commands) -> None:
    fmt = _command(commands, "fmt", "rewrite specs in the canonical layout", run_fmt)
    _files(fmt, ".rnn spec files (`-`: read stdin, write stdout)")
    fmt.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 and name each file that would change")
    fmt.add_argument("--diff", action="store_true",
                     help="write nothing; print a unified diff of the changes")
    _color(fmt)

    _command(commands, "lsp", "serve the Language Server Protocol over stdio "
                              "(needs the `lsp` extra: pygls, lsprotocol)", run_lsp)

    draw = _command(commands, "draw", "draw the stacks of a spec as an SVG picture", run_draw)
    _file(draw)
    _stack(draw, "draw only this stack (default: all)")
    _output(draw, "OUT.svg", "the SVG")
    _force(draw, "OUT.svg", "rnnspec draw", "draw")
    _color(draw)

    infer = _command(commands, "infer", "write a spec describing a checkpoint's recurrent "
                                        "modules", run_infer)
    infer.add_argument("checkpoint", metavar="CKPT", help=".safetensors or torch.save file")
    _output(infer, "OUT.rnn", "the spec")
    infer.add_argument("--cells", metavar="FILE",
                       help="a spec whose cells describe the checkpoint's other modules")
    _force(infer, "OUT.rnn", "`rnnspec infer`")


def _parser(only_check: bool = False) -> argparse.ArgumentParser:
    """The command line. `only_check` builds the `check` subcommand alone, for a command
    line that is plainly a check (`rnnspec check ...` without `-h`): its parsing, errors and
    usage lines are those of the whole parser, and it skips building the other six
    subcommands (a tenth of the check's start-up)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="rnnspec",
        description="Check .rnn specs of recurrent PyTorch stacks and generate their modules.",
    )
    parser.add_argument("--version", action="version", version=f"rnnspec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(commands)
    if not only_check:
        _add_generate(commands)
        _add_export(commands)
        _add_tools(commands)
    return parser


def _plainly_check(argv: list[str]) -> bool:
    return bool(argv) and argv[0] == "check" and not any(
        a in ("-h", "--help") or a.startswith("--h") for a in argv)


# `rnnspec check FILE...` with no option, as the check subcommand's parser reads it
# (tests/test_cli.py compares the two): the check an editor runs on every save, which
# then neither imports nor builds argparse (about a twentieth of its start-up).
_PLAIN_CHECK_DEFAULTS = dict(command="check", json=False, verify=False, color="auto",
                             weights=None, stack=None, prefix=None)


def _plain_check(argv: list[str]):
    """The arguments of a command line that is `check` and file names only, else None."""
    if len(argv) < 2 or argv[0] != "check" or any(a.startswith("-") for a in argv[1:]):
        return None
    from types import SimpleNamespace

    return SimpleNamespace(**_PLAIN_CHECK_DEFAULTS, files=argv[1:], run=run_check)


# ----------------------------------------------------------------------------- running


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
            import torch  # noqa: F401 - verify imports it lazily; ask here, once

            from rnnspec.backends.torch.verify import verify_results
        except ImportError:  # torch is an extra
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


def _checked_for_output(args, style):
    """Check `args.file`, printing its diagnostics to stderr: the result, and whether it
    may be generated from (no errors)."""
    from rnnspec.check.checker import check_path
    from rnnspec.language.diagnostics import render

    result = check_path(args.file)
    sources = {result.path: result.text.split("\n")}
    for diagnostic in result.diagnostics:
        sys.stderr.write(render(diagnostic, sources, style) + "\n\n")
    return result


def run_generate(args) -> int:
    from rnnspec import backends

    style = _style(args)
    result = _checked_for_output(args, style)
    if not result.ok:
        return _exit_status([result])
    from rnnspec.backends.torch.codegen import OutputError, write_output

    source = backends.get(args.backend, backends.MODULE).generate(result)
    if args.output == "-":
        sys.stdout.write(source)
        return EXIT_OK
    try:
        write_output(args.output, source, force=args.force, inputs=(args.file,))
    except OutputError as exc:
        sys.stderr.write(f"{style.error('error')}: {exc}\n")
        return EXIT_USAGE
    return EXIT_OK


def run_export(args) -> int:
    from rnnspec import backends

    backend = backends.default(backends.ONNX)
    exporter = backend.module()
    style = _style(args)
    opset = exporter.DEFAULT_OPSET if args.opset is None else args.opset
    if not exporter.MIN_OPSET <= opset <= exporter.MAX_OPSET:
        sys.stderr.write(f"{style.error('error')}: opset {opset} is not supported: rnnspec "
                         f"writes opsets {exporter.MIN_OPSET} to {exporter.MAX_OPSET}\n")
        return EXIT_USAGE
    if args.prefix is not None and args.weights is None:
        return _usage_error("--prefix goes with --weights")
    result = _checked_for_output(args, style)
    if not result.ok:
        return _exit_status([result])
    try:
        stack = backend.generate(result, args.output, stack_name=args.stack,
                                 weights=args.weights, opset=opset, seed=args.seed,
                                 initial_states=args.initial_states, lengths=args.lengths,
                                 force=args.force, prefix=args.prefix)
    except exporter.ExportError as exc:
        sys.stderr.write(f"{style.error('error')}: {exc}\n")
        if exc.help:
            sys.stderr.write(f"{style.note('help')}: {exc.help}\n")
        return exc.status
    sys.stderr.write(f"wrote `{args.output}`: stack `{stack.name}`, opset {opset}\n")
    return EXIT_OK


def _style(args):
    from rnnspec.language.diagnostics import Style

    return Style(_use_colour(args.color, sys.stderr))


def run_fmt(args) -> int:
    from rnnspec.tools.fmt import run_fmt

    return run_fmt(args, _style(args))


def run_draw(args) -> int:
    from rnnspec.tools.draw import run_draw

    return run_draw(args, _style(args))


def run_lsp(args) -> int:
    from rnnspec.tools.lsp.server import serve

    return serve()


def run_infer(args) -> int:
    from rnnspec.tools.checkpoints.infer import run_infer

    return run_infer(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _plain_check(argv) or _parser(only_check=_plainly_check(argv)).parse_args(argv)
    try:
        return args.run(args)
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
