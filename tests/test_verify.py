"""`rnnspec check --verify` builds every stack with torch and confirms the derived shapes."""

from __future__ import annotations

import cli_process
import pytest
from conftest import ROOT

from rnnspec.backends.torch.verify import verify_results, verify_stack
from rnnspec.check.checker import check_path

pytest.importorskip("torch")


def test_verify_passes_on_the_examples():
    for path in sorted((ROOT / "examples").glob("*.rnn")):
        run = cli_process.run("check", "--verify", path)
        assert run.returncode == 0, run.stdout
        assert "E050" not in run.stdout


def test_verify_catches_a_wrong_derivation():
    result = check_path(str(ROOT / "examples" / "seed.rnn"))
    stack = result.stacks[1]
    block = stack.blocks[0]
    wrong_output = block._replace(output=("T", "B", 25))
    wrong_parameters = block._replace(parameters=block.parameters[::-1])
    for broken in (wrong_output, wrong_parameters):
        problems = verify_stack(stack._replace(entries=(broken,)))
        assert [d.code for d in problems] == ["E050"]
        assert problems[0].span == block.span
    result.stacks[1] = stack._replace(entries=(wrong_output,))
    verify_results([result])
    assert not result.ok
