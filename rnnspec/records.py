"""`Record`: immutable records declared like `typing.NamedTuple`, built cheaply at import.

    class Span(Record):
        line: int
        column: int = 1

A `Record` subclass is a tuple with one read-only attribute per annotated field, in
order, and the interface of a named tuple: positional or keyword construction, defaults,
`_fields`, `_field_defaults`, `_replace`, `_asdict`, `_make`, a readable `repr`, equality,
hashing, unpacking and pickling as tuples.

Why not `typing.NamedTuple`: it compiles a constructor from source for every class
(`collections.namedtuple` calls `eval`), about a millisecond per class on the machines
rnnspec is measured on, and the check path declares some fifty record classes that
`rnnspec check` would build on every start. A `Record` class is built from a shared
constructor and C-level field accessors, with no compilation.
"""

from __future__ import annotations

from collections import _tuplegetter  # the C accessor `collections.namedtuple` uses


class _RecordType(type):
    def __new__(mcls, name, bases, namespace):
        if namespace.get("_is_root"):
            return super().__new__(mcls, name, bases, namespace)
        fields = tuple(namespace.get("__annotations__", {}))
        defaults = {f: namespace.pop(f) for f in fields if f in namespace}
        required = len(fields) - len(defaults)
        if tuple(defaults) != fields[required:]:
            raise TypeError(f"{name}: fields with a default must come after those without")
        namespace["__slots__"] = ()
        namespace["_fields"] = fields
        namespace["_field_defaults"] = defaults
        namespace["_required"] = required
        for index, field in enumerate(fields):
            namespace[field] = _tuplegetter(index, f"{name}.{field}")
        return super().__new__(mcls, name, bases, namespace)


class Record(tuple, metaclass=_RecordType):
    """Base class of the immutable records (see the module's docstring)."""

    _is_root = True
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _field_defaults: dict[str, object] = {}
    _required = 0

    def __new__(cls, *args, **kwargs):
        if not kwargs and len(args) == len(cls._fields):
            return tuple.__new__(cls, args)
        return tuple.__new__(cls, cls._values(args, kwargs))

    @classmethod
    def _values(cls, args: tuple, kwargs: dict) -> list:
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments, "
                            f"got {len(args)}")
        values = list(args)
        for field in fields[len(args):]:
            if field in kwargs:
                values.append(kwargs.pop(field))
            elif field in cls._field_defaults:
                values.append(cls._field_defaults[field])
            else:
                raise TypeError(f"{cls.__name__}() missing argument {field!r}")
        if kwargs:
            extra = next(iter(kwargs))
            given = "given twice" if extra in fields else "unknown"
            raise TypeError(f"{cls.__name__}() argument {extra!r}: {given}")
        return values

    @classmethod
    def _make(cls, iterable):
        return cls(*iterable)

    def _replace(self, **changes):
        values = [changes.pop(field, value) for field, value in zip(self._fields, self)]
        if changes:
            raise TypeError(f"{type(self).__name__}._replace(): unknown field "
                            f"{next(iter(changes))!r}")
        return tuple.__new__(type(self), values)

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def __repr__(self) -> str:
        inner = ", ".join(f"{field}={value!r}" for field, value in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"

    def __getnewargs__(self):
        return tuple(self)
