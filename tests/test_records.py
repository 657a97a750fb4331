"""`rnnspec.records.Record` behaves as `typing.NamedTuple` does for what rnnspec uses."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from typing import NamedTuple

import pytest

from rnnspec.records import Record


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    label: str = "p"

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


class PointNT(NamedTuple):
    x: int
    y: int = 0
    label: str = "p"


@pytest.mark.parametrize("args, kwargs", [
    ((1,), {}), ((1, 2), {}), ((1, 2, "q"), {}), ((), {"x": 3}), ((1,), {"label": "z"}),
    ((), {"label": "z", "x": 5, "y": -1}),
])
def test_construction_as_named_tuple(args, kwargs):
    ours, theirs = Point(*args, **kwargs), PointNT(*args, **kwargs)
    assert tuple(ours) == tuple(theirs)
    assert (ours.x, ours.y, ours.label) == (theirs.x, theirs.y, theirs.label)
    assert repr(ours) == repr(theirs).replace("PointNT", "Point")
    assert ours._asdict() == theirs._asdict()
    assert ours._replace(y=9) == theirs._replace(y=9)
    assert Point._make(ours) == ours


@pytest.mark.parametrize("args, kwargs", [
    ((), {}), ((1, 2, "q", 4), {}), ((1,), {"x": 2}), ((1,), {"z": 2}),
])
def test_bad_construction_is_a_type_error(args, kwargs):
    with pytest.raises(TypeError):
        PointNT(*args, **kwargs)
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_record_interface():
    p = Point(1, -2)
    assert isinstance(p, tuple) and p == (1, -2, "p") and hash(p) == hash((1, -2, "p"))
    assert Point._fields == PointNT._fields
    assert Point._field_defaults == PointNT._field_defaults
    assert p.norm1() == 3 and Point.__doc__ == "A point."
    x, y, label = p
    assert (x, y, label) == (1, -2, "p")
    with pytest.raises(AttributeError):
        p.x = 5
    with pytest.raises(AttributeError):
        p.other = 5  # no instance dict
    with pytest.raises(TypeError):
        p._replace(z=1)
    assert pickle.loads(pickle.dumps(p)) == p and type(pickle.loads(pickle.dumps(p))) is Point
    assert copy.deepcopy(p) == p and type(copy.copy(p)) is Point


def test_defaults_must_come_last():
    with pytest.raises(TypeError, match="default"):
        class Bad(Record):
            a: int = 1
            b: int


def test_check_path_declares_no_typing_named_tuples():
    """Every record class `rnnspec check` imports is a Record: typing.NamedTuple compiles
    a constructor per class, which the start-up budget cannot afford."""
    code = (
        "import sys, rnnspec.cli\n"
        "from rnnspec.check import checker, entries, expect, report\n"
        "from rnnspec.records import Record\n"
        "bad = sorted(f'{m.__name__}.{k}' for m in list(sys.modules.values())\n"
        "             if (m.__name__ or '').startswith('rnnspec')\n"
        "             for k, v in vars(m).items() if isinstance(v, type)\n"
        "             and issubclass(v, tuple) and hasattr(v, '_fields')\n"
        "             and not issubclass(v, Record))\n"
        "print(len([m for m in sys.modules if m.startswith('rnnspec')]), bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert int(out[0]) > 10 and out[1].strip() == "[]"
