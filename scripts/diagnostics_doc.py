"""Write docs/diagnostics.md: every diagnostic code with what it means, an example spec
(from tests/cases/) and what `rnnspec check` prints for it.

    python scripts/diagnostics_doc.py            # rewrite docs/diagnostics.md
    python scripts/diagnostics_doc.py --stdout   # print it (the test suite compares)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnspec.check.checker import check_path  # noqa: E402
from rnnspec.check.report import text_report  # noqa: E402
from rnnspec.language.diagnostics import CODES, Style  # noqa: E402
from rnnspec.tools.checkpoints.compare import attach  # noqa: E402

EXPLANATIONS = {
    "E001": "The text does not follow the grammar. The message says in words what could "
            "come next; the caret is on the first token that cannot. The definition with the "
            "error is dropped and parsing goes on at the next top-level definition, so "
            "every other definition is still checked.",
    "E002": "A character that no token of the language starts with, such as `/` (integer "
            "division is `//`), quotes (words are bare) or an invisible control character.",
    "E003": "Parentheses nested deeper than the limit (64). No real spec needs this; "
            "name a part with `let`.",
    "E004": "An integer literal with more than 500 digits, or a float literal too large "
            "to represent (`1e999`).",
    "E005": "The file is not UTF-8. The message gives the offset of the first bad byte. "
            "`rnnspec check` exits with status 2.",
    "E006": "The file cannot be read (missing, a folder, no permission). It has no line or "
            "column. `rnnspec check` exits with status 2.",
    "E010": "A name that is not a constant where a value is needed. The help suggests the "
            "closest constant.",
    "E011": "A constant, stack, block, stack property, block argument or expectation key "
            "given twice. A note points at the first one.",
    "E012": "A name that may not be used: a Python keyword, a word of the language, a name "
            "with non-ASCII letters (look-alikes are the classic trap), a name starting with "
            "`_`, a block name that would replace an attribute of `torch.nn.Module` or of the "
            "generated class, or a stack name that would shadow a builtin or a name the "
            "generated module imports (`torch`, `nn`, `Tensor`, ...).",
    "E013": "Constants that refer to each other in a cycle.",
    "E020": "A value of the wrong type: a float where an integer is needed, a number where "
            "`true` or `false` is needed (a condition of `if`, an operand of `and`, `or`, "
            "`not`), a comparison's `true` or `false` where a size is needed, `true` "
            "compared with a number, and so on.",
    "E021": "A value outside its range: `hidden_size` and `num_layers` at least 1, "
            "`dropout` between 0 and 1, `recurrent_dropout`, `zoneout` and `weight_dropout` "
            "from 0 up to (not including) 1, `nonlinearity` `tanh` or `relu`, `merge` "
            "`concat`, `sum`, `mean` or `mul`, dimensions at least 1; and every value "
            "PyTorch's modules refuse: `batch_norm`'s `eps` above 0, `hardtanh`'s `max_val` "
            "above its `min_val`, a pool's `padding` at most half its window, an "
            "`embedding`'s `padding_idx` within its table.",
    "E022": "Integer division by zero in an expression; in a cell's equations, `/` by a "
            "number that is zero (`h / 0`, `1 / (2 - 2.0)`).",
    "E023": "A value too large to mean anything: more than 500 digits, or a size beyond "
            "PyTorch's int64 dimensions; in a cell's equations, a whole number beyond int64 "
            "(2**63 - 1, as which torch takes it) or any number beyond float32 (3.4e38), "
            "written or computed from numbers alone.",
    "E024": "A parameter or buffer that torch cannot allocate on any machine: more elements "
            "than its int64 count holds (2**63 - 1), or more float32 bytes than a process "
            "maps (2**48, 256 TiB: x86-64 and ARM64 with 48-bit addresses, Linux's default "
            "on both). The error is at the block or layer, naming the first such tensor; "
            "when each tensor fits but the stack's tensors together exceed 256 TiB, at the "
            "stack. A stack that is merely larger than any device's memory (over 1 TiB) gets "
            "warning W002 instead; `rnnspec export` refuses any stack over 2 GiB (ONNX's "
            "limit) before allocating, and one that the machine cannot allocate exits with "
            "status 2 and a one-line message.",
    "E030": "A stack property other than `input_size` and `batch_first`. Block arguments "
            "such as `hidden_size` belong inside the block's call.",
    "E031": "A stack without `input_size`.",
    "E032": "A stack without any block.",
    "E033": ("A cell other than `rnn`, `lstm`, `gru` and the file's own cells. A PyTorch "
             "spelling (`LSTM`, or `nn.LSTM(` and `torch.nn.GRU(` copied from code) gets the "
             "cell to write; a call copied from code gets the whole call as rnnspec writes "
             "it (keywords as `name = value`, `True` as `true`, `self.` dropped)."),
    "E034": "An argument the cell does not take (`proj_size` is lstm only, `nonlinearity` "
            "rnn only) or a misspelt one.",
    "E035": "A block without `hidden_size`.",
    "E036": "A block's explicit `input_size` differs from the features it receives (the "
            "stack's `input_size`, or the previous block's output, which is doubled by "
            "`bidirectional`).",
    "E037": "`proj_size` must be smaller than `hidden_size` (PyTorch's rule).",
    "E038": ("A positional argument that cannot bind: after a keyword argument, beyond the "
             "cell's positional arguments (PyTorch's constructor order), or given to a "
             "declared cell, whose arguments are keyword-only."),
    "E039": ("A block sets `batch_first` to a value other than its stack's. `batch_first` "
             "is a property of the stack; a block may repeat it (as PyTorch code passes it "
             "to the constructor) only when it agrees."),
    "E071": ("Two sizes in a cell's equations differ for some sizes: an elementwise operation "
             "of vectors of different sizes, or a state given a value of another size. Sizes "
             "are compared as polynomials of the size names, so the error holds for every "
             "size; the help names a missing `chunk` when one size is a multiple of the "
             "other."),
    "E072": ("A matrix product `W @ v` whose left is not a matrix parameter, or whose "
             "matrix's columns differ from the vector's size. The layout is PyTorch's "
             "`F.linear`: `[out, in]`; a matrix declared the other way round gets a help."),
    "E073": ("A `chunk` that does not match: a count different from the names on the left, "
             "a constant size that does not divide, several names without `chunk`, or "
             "`chunk` inside an expression."),
    "E074": ("Something that is not part of the step's expression language: an unknown "
             "function, a function with the wrong arguments, a size used as a value, `//` in "
             "an equation, or a function or `/` outside a cell."),
    "E075": ("An assignment the step does not allow: to `x`, a parameter, a size or a "
             "constant, or a second assignment of a state in one step."),
    "E076": ("A cell declaration that is not valid: no state, a parameter that is neither a "
             "vector nor a matrix, an unknown initialiser."),
    "E077": ("A condition of a cell that holds for some sizes only (a `chunk` or `//` that "
             "must divide exactly, a size that must be at least 1) fails for the sizes of a "
             "block that uses the cell. Reported at the block, with a note at the cell."),
    "E078": ("In a cell's equations, a condition (a comparison, `and`, `or`, `not`) where a "
             "value is needed, such as on the right of an assignment or in arithmetic, or "
             "a value where a condition is needed (the first argument of `where`, the "
             "operands of `and`, `or`, `not`). Conditions only choose: "
             "`where(condition, a, b)`."),
    "E079": ("A `require` that is not `size == size`, or a block whose sizes break a "
             "cell's `require` (in its first layer, or in a later layer, which reads the "
             "directions of the previous layer's first state). Reported at the block, with "
             "a note at the `require`."),
    "E040": "An `expect` block names a stack that does not exist.",
    "E041": ("An expectation key other than `input`, `output`, and `s0` / `s_n` for a state "
             "`s` of a cell (`h0`, `c0`, `h_n`, `c_n` for the built-in cells)."),
    "E042": "An `expect` block without `input`, which fixes batched or unbatched, T and B.",
    "E043": "A shape with the wrong number of dimensions.",
    "E044": "A shape that differs from the derived one. The caret marks the offending "
            "dimensions; the help names the known mistake when one explains it (batch and "
            "layer axes swapped in a state, `batch_first` applied to a state, features not "
            "equal to `input_size`, a missing factor 2 for `bidirectional`, `c` sized by "
            "`proj_size`).",
    "E045": "A state key in a stack of several blocks needs the block, `h0[encoder]` or "
            "`h0[0]`; or the block named does not exist; or `input` was given one.",
    "E046": "`c0` or `c_n` for a block that is not an lstm.",
    "E050": "`rnnspec check --verify` built a stack with torch (on the `meta` device) and "
            "torch disagrees with a derived shape, or cannot build it. This would be a bug "
            "in rnnspec; the test suite checks that it never happens.",
    "E060": "`rnnspec check --weights`: the checkpoint's shapes imply another value of an "
            "argument (`hidden_size`, `num_layers`, `bidirectional`, `bias`, `proj_size`) or "
            "of the features a block takes. The error is at the argument as written (at the "
            "block when it is left at its default; at the stack's `input_size` for the first "
            "block); a note names the tensor that shows it; the help gives the value. All "
            "the tensors one argument explains give this one diagnostic, and a block whose "
            "input changed only because the block before it did is not reported again.",
    "E061": "`rnnspec check --weights`: the rows of the checkpoint's weights over the hidden "
            "size count another number of gates (1: rnn, 3: gru, 4: lstm) than the block's "
            "cell has.",
    "E062": "`rnnspec check --weights`: tensors of a block that are missing, extra or of "
            "another shape, and that no argument explains (a tensor dropped or edited by "
            "hand, a module that is not PyTorch's). One diagnostic per block lists them.",
    "E063": "`rnnspec check --weights`: a block of a stack of several has no tensors under "
            "the checkpoint's prefix (`<prefix><block>.weight_ih_l0`, ...); a note lists the "
            "recurrent modules no block claims, often the block under another name.",
    "E064": "`rnnspec check --weights`: no key of the checkpoint has the names of the "
            "stack's tensors under any prefix (or under the one given with `--prefix`). A "
            "note lists the checkpoint's recurrent modules.",
    "E090": "`merge` (any of `concat`, `sum`, `mean`, `mul`) on a block that is not "
            "bidirectional: `merge` says how a block's two directions combine, and this "
            "block has one.",
    "E091": "`residual = true` adds a block's input to its output, so both must have the "
            "same number of features. The notes show where each size comes from; a "
            "bidirectional block gives out twice its state size unless it merges its "
            "directions with `sum`, `mean` or `mul`.",
    "E092": "`reverse = true` runs a block's one direction backwards, from each sequence's "
            "last valid step to its first (ONNX's `direction = reverse`). A bidirectional "
            "block already runs both directions, so the two arguments contradict each "
            "other: keep `bidirectional` for both directions, or `reverse` for the backward "
            "one alone.",
    "W001": "`dropout` above 0 with `num_layers = 1`: PyTorch applies dropout between the "
            "layers of a block, so it does nothing (PyTorch warns too).",
    "W002": "The stack's parameters need more than 1 TiB in float32: almost surely a "
            "mistake in the sizes. Counts stay exact however large.",
    "W003": "A parameter of a cell that no equation reads: it would be trained for nothing.",
    "W004": "A local of a cell assigned but never read. A local read in an expression that "
            "failed to check (an unknown function, a misspelt name) counts as read: the "
            "error comes alone.",
    "W005": "A state of a cell that no statement assigns: it keeps its initial value forever.",
    "E101": "A 2-D layer's window (its kernel, dilated, on the features axis) is wider than "
            "the bins of the map it reads, padding included. A 2-D layer's pairs are "
            "`[features, time]` (`[time, features]` with `layout = time_first`): a pair "
            "written the other way round is the usual cause.",
    "E102": "`groups` must divide both the channels a convolution reads and its "
            "`out_channels`, as PyTorch requires.",
    "E103": "`from` reads earlier entries and the stack's inputs only (`input` and the "
            "side inputs); a later or unknown name is an error at that name.",
    "E104": "The parts of `concat` must share their time formula (the layers that change "
            "time must be the same in each); the parts of `sum` must also have equal "
            "features.",
    "E105": "`embedding` reads the stack's integer ids, so it is the first entry and the "
            "stack has no `input_size`.",
    "E106": "`pool` ends time: after it only per-step layers may follow. `pool(final)` "
            "reads the final states of the recurrent block just before it.",
    "E107": "With the `T` an `expect` binds, some entry's time formula gives less than one "
            "step. The message gives the formula and its value; the help gives the shortest "
            "input the stack accepts.",
    "E108": "A side input is `NAME = input(size)` (or `input(size, over = sequence)`): "
            "forward takes it as the keyword argument `NAME`.",
    "W010": "`pool(last)` takes each sequence's last valid output; for a bidirectional block "
            "its reverse direction has then seen one step. `pool(final)` takes both "
            "directions' final states.",
    "W011": "PyTorch's `nn.Linear(in_features, out_features)`, `nn.Conv1d(in_channels, "
            "out_channels, kernel_size)` and `nn.Conv2d` take the input size first; rnnspec "
            "derives it from the entry before, so `linear`, `conv1d` and `conv2d` start at "
            "the output size. A first positional integer equal to the size the entry reads, "
            "followed by another integer (and, for a convolution, a third argument), is that "
            "order copied: the output size was read as the input's, and every later "
            "argument one place off. Naming the arguments (`out_channels = 1`) keeps a "
            "reading that is meant.",
}


def document() -> str:
    cases: dict[str, list[Path]] = {}
    for path in sorted((ROOT / "tests" / "cases").glob("*.rnn")):
        cases.setdefault(path.name[:4], []).append(path)
    out = [
        "# Diagnostics",
        "",
        "Every problem `rnnspec` finds in a spec is a diagnostic with a stable code: `E` for",
        "errors (exit status 1, or 2 for E005 and E006), `W` for warnings (exit status 0).",
        "Each is printed as `PATH:LINE:COL: severity[CODE]: message`, the source line with a",
        "caret under the span, then `note:` and `help:` lines. `--json` gives the same data.",
        "",
        "This page is written by `scripts/diagnostics_doc.py` from the cases in",
        "`tests/cases/`; the test suite checks that it is up to date.",
        "",
    ]
    here = os.getcwd()
    for code, title in CODES.items():
        # an explicit anchor: `rnnspec lsp` links each diagnostic to `diagnostics.md#e044`,
        # which must not depend on how a renderer slugs the heading
        out += [f'<a id="{code.lower()}"></a>', "", f"## {code}: {title}", "",
                EXPLANATIONS[code], ""]
        examples = cases.get(code)
        if code == "E050":
            out += ["```", "$ rnnspec check --verify spec.rnn", "spec.rnn:4:5: error[E050]: "
                    "torch builds the output of block `lstm0` as [3, 2, 50], but rnnspec "
                    "derived ['T', 'B', 25]", "```", ""]
            continue
        if examples is None:
            out += ["```", "$ rnnspec check missing.rnn", "error[E006]: cannot read "
                    "`missing.rnn`: No such file or directory", "```", ""]
            continue
        for case in examples:
            text = case.read_bytes().decode("utf-8", "replace")
            weights = case.with_suffix(".weights.json")
            os.chdir(case.parent)
            try:
                result = check_path(case.name)
                if weights.exists():
                    shapes = json.loads(weights.read_text(encoding="utf-8"))
                    attach(result, result.stacks[0],
                           {k: (tuple(v), "float32") for k, v in shapes.items()}, weights.name)
                report = text_report([result], Style(False))
            finally:
                os.chdir(here)
            shown = "\n\n".join(p for p in report.split("\n\n") if f"[{code}]" in p)
            out += [f"`{case.name}`:", "", "```", text.rstrip("\n"), "```", ""]
            if weights.exists():
                out += ["checked with `--weights` against a checkpoint holding these tensors "
                        "(name: shape):", "", "```json",
                        weights.read_text(encoding="utf-8").rstrip("\n"), "```", ""]
            out += ["```", shown.strip("\n"), "```", ""]
    return "\n".join(out)


def main() -> None:
    text = document()
    if "--stdout" in sys.argv:
        sys.stdout.write(text)
    else:
        (ROOT / "docs" / "diagnostics.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
