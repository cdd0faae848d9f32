"""Record: a frozen, slotted value type (the runtime's stand-in for a frozen dataclass).

The runtime sits on the start-up path of every container: importing `dataclasses` costs
~12 ms and each `namedtuple()` ~0.2 ms (it compiles code), against ~20 µs for a plain class.
A Record subclass lists its fields in __slots__; instances compare by value, are immutable
(__setattr__ raises), unpack like tuples and support `_replace(**changes)`.
"""
from __future__ import annotations


class Record:
    __slots__ = ()

    def __init__(self, *args, **kw):
        fields = self.__slots__
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} values, got {len(args)}")
        setter = object.__setattr__
        for name, val in zip(fields, args):
            setter(self, name, val)
        for name in fields[len(args):]:
            if name not in kw:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            setter(self, name, kw.pop(name))
        if kw:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {', '.join(kw)}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: use _replace()")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _astuple(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__slots__)

    def _asdict(self) -> dict:
        return {f: getattr(self, f) for f in self.__slots__}

    def _replace(self, **changes):
        vals = self._asdict()
        vals.update(changes)
        return type(self)(**vals)

    def __iter__(self):
        return iter(self._astuple())

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._astuple() == other._astuple()

    def __hash__(self):
        return hash((type(self).__name__,) + self._astuple())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Factory:
    """A field's default made anew for each instance (dataclasses' default_factory);
    compare=False leaves the field out of ==, as dataclasses' field(compare=False)."""
    __slots__ = ("make", "compare")

    def __init__(self, make, compare: bool = True):
        self.make, self.compare = make, compare


def record(cls):
    """Class decorator: the annotated fields of `cls` (defaults as class attributes, Factory
    for mutable ones) make it a frozen value type, like @dataclass(frozen=True) — keyword or
    positional construction, ==, hash, repr, _replace(), _asdict(), _fields — without the
    ~0.5 ms per class that dataclasses spends generating code (and ~5 ms importing it) on
    every CLI start. No __slots__ (added after the fact they can't be), no inheritance of
    fields."""
    names = tuple(n for n in cls.__dict__.get("__annotations__", {}))
    defaults, factories, compared = {}, {}, []
    for n in names:
        value = cls.__dict__.get(n, _MISSING)
        if isinstance(value, Factory):
            factories[n] = value.make
            if value.compare:
                compared.append(n)
            delattr(cls, n)
            continue
        compared.append(n)
        if value is not _MISSING:
            defaults[n] = value
    compared = tuple(compared)
    n_fields = len(names)

    def __init__(self, *args, **kw):
        if len(args) > n_fields:
            raise TypeError(f"{cls.__name__} takes {n_fields} values, got {len(args)}")
        setter = object.__setattr__
        for name, val in zip(names, args):
            setter(self, name, val)
        for name in names[len(args):]:
            if name in kw:
                setter(self, name, kw.pop(name))
            elif name in defaults:
                setter(self, name, defaults[name])
            elif name in factories:
                setter(self, name, factories[name]())
            else:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
        if kw:
            raise TypeError(f"{cls.__name__}: unknown field(s) {', '.join(kw)}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __setattr__(self, name, value):
        raise AttributeError(f"{cls.__name__} is immutable: use _replace()")

    def __delattr__(self, name):
        raise AttributeError(f"{cls.__name__} is immutable")

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in compared)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self):
        return hash((cls.__name__,) + _key(self))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in names)
        return f"{cls.__name__}({inner})"

    def _asdict(self) -> dict:
        return {f: getattr(self, f) for f in names}

    def _replace(self, **changes):
        vals = {f: getattr(self, f) for f in names}
        vals.update(changes)
        return cls(**vals)

    for name, fn in (("__init__", __init__), ("__setattr__", __setattr__),
                     ("__delattr__", __delattr__), ("__eq__", __eq__), ("__hash__", __hash__),
                     ("__repr__", __repr__), ("_asdict", _asdict), ("_replace", _replace)):
        if name not in cls.__dict__ or name in ("__init__", "__eq__", "__hash__"):
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    cls._fields = names
    return cls


_MISSING = object()


def asdict(value):
    """Like dataclasses.asdict for records: nested records, lists, tuples and dicts of them
    become plain data."""
    if hasattr(type(value), "_fields") and hasattr(value, "_asdict"):
        return {k: asdict(v) for k, v in value._asdict().items()}
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(asdict(v) for v in value)
    if isinstance(value, dict):
        return {k: asdict(v) for k, v in value.items()}
    return value
