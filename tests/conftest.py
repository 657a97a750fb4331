"""Shared fixtures: paths, golden files, devices."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_EXAMPLES = ROOT.parent / "shared" / "examples"
OWN_EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("RNNSPEC_UPDATE_GOLDEN") == "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_examples() -> list[Path]:
    return sorted(SHARED_EXAMPLES.glob("*.rnn"))


def assert_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/NAME; RNNSPEC_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"no golden file {path}: run with RNNSPEC_UPDATE_GOLDEN=1 and review"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"output differs from {path} (RNNSPEC_UPDATE_GOLDEN=1 refreshes)"


def _devices():
    devices = ["cpu"]
    try:
        import torch  # noqa: F401
    except ImportError:
        return devices
    devices.append(pytest.param("cuda", marks=pytest.mark.cuda))
    return devices


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device-dependent test runs on cpu, and on cuda where there is one."""
    if request.param == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("CUDA is not available (torch.cuda.is_available() is false)")
    return request.param


def pytest_collection_finish(session):
    """Start the compiled backend's test library building in the background when a selected
    test needs it (tests/compiled_prebuild.py): the suite runs on meanwhile."""
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ == "test_compiled_backend" and (
                "modules" in item.fixturenames or "two_processes" in item.name):
            module.prebuild()
            return


def pytest_sessionfinish(session):
    compiled_prebuild = sys.modules.get("compiled_prebuild")
    if compiled_prebuild is not None:
        compiled_prebuild.stop()
