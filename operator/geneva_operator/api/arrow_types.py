"""Arrow type strings as users write them in `spec.udf.outputType`.

Parsed here without pyarrow so that the operator (which has no Arrow runtime) and the
engine agree on one grammar; the engine turns the parsed tree into a pyarrow type.

Grammar (whitespace is ignored):
    type   := prim
            | "list<" type ">" | "large_list<" type ">"
            | "fixed_size_list<" type ">[" INT "]"
            | "struct<" field ("," field)* ">"
            | "timestamp[" unit ("," tz)? "]"
    field  := NAME ":" type
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

PRIMITIVES: dict[str, str] = {
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "float16": "float16", "halffloat": "float16",
    "float32": "float32", "float": "float32",
    "float64": "float64", "double": "float64",
    "bool": "bool", "boolean": "bool",
    "string": "string", "utf8": "string", "large_string": "large_string",
    "binary": "binary", "large_binary": "large_binary",
    "date32": "date32", "date64": "date64",
}
TIME_UNITS = ("s", "ms", "us", "ns")

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>\d+)|(?P<punct>[<>\[\],:]))")


class ArrowTypeError(ValueError):
    """The string is not an Arrow type this project understands."""


@dataclass(frozen=True)
class ArrowType:
    """A parsed type: `name` is a canonical primitive or one of list, large_list,
    fixed_size_list, struct, timestamp."""

    name: str
    item: "ArrowType | None" = None
    size: int | None = None
    fields: tuple[tuple[str, "ArrowType"], ...] = field(default_factory=tuple)
    unit: str | None = None
    tz: str | None = None

    def __str__(self) -> str:
        if self.name in ("list", "large_list"):
            return f"{self.name}<{self.item}>"
        if self.name == "fixed_size_list":
            return f"fixed_size_list<{self.item}>[{self.size}]"
        if self.name == "struct":
            return "struct<" + ", ".join(f"{n}: {t}" for n, t in self.fields) + ">"
        if self.name == "timestamp":
            return f"timestamp[{self.unit}{', ' + self.tz if self.tz else ''}]"
        return self.name


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ArrowTypeError(f"unexpected character {text[pos:].strip()[:1]!r} in Arrow type {text!r}")
        tokens.append(m.group("name") or m.group("int") or m.group("punct"))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        tok = self._peek()
        if tok is None:
            raise ArrowTypeError(f"Arrow type {self.text!r} ends early" + (f", expected {expected!r}" if expected else ""))
        if expected is not None and tok != expected:
            raise ArrowTypeError(f"expected {expected!r} but found {tok!r} in Arrow type {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> ArrowType:
        t = self._type()
        if self._peek() is not None:
            raise ArrowTypeError(f"unexpected {self._peek()!r} after the end of Arrow type {self.text!r}")
        return t

    def _type(self) -> ArrowType:
        name = self._take().lower()
        if name in PRIMITIVES:
            return ArrowType(PRIMITIVES[name])
        if name in ("list", "large_list"):
            self._take("<")
            item = self._type()
            self._take(">")
            return ArrowType(name, item=item)
        if name == "fixed_size_list":
            self._take("<")
            item = self._type()
            self._take(">")
            self._take("[")
            size = self._take()
            if not size.isdigit() or int(size) < 1:
                raise ArrowTypeError(f"fixed_size_list needs a positive size, got {size!r} in {self.text!r}")
            self._take("]")
            return ArrowType(name, item=item, size=int(size))
        if name == "struct":
            self._take("<")
            fields = []
            while True:
                fname = self._take()
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", fname):
                    raise ArrowTypeError(f"bad struct field name {fname!r} in {self.text!r}")
                self._take(":")
                fields.append((fname, self._type()))
                if self._take() == ">":
                    break
                # the token just taken must have been a comma
                if self.tokens[self.i - 1] != ",":
                    raise ArrowTypeError(f"expected ',' or '>' in struct of {self.text!r}")
            names = [n for n, _ in fields]
            if len(set(names)) != len(names):
                raise ArrowTypeError(f"duplicate struct field names in {self.text!r}")
            return ArrowType("struct", fields=tuple(fields))
        if name == "timestamp":
            self._take("[")
            unit = self._take()
            if unit not in TIME_UNITS:
                raise ArrowTypeError(f"timestamp unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
            tz = None
            if self._peek() == ",":
                self._take(",")
                tz = self._take()
            self._take("]")
            return ArrowType("timestamp", unit=unit, tz=tz)
        raise ArrowTypeError(
            f"unknown Arrow type {name!r} in {self.text!r}; known: {', '.join(sorted(set(PRIMITIVES)))}, "
            "list<T>, large_list<T>, fixed_size_list<T>[N], struct<name: T, ...>, timestamp[unit]"
        )


def parse_arrow_type(text: str) -> ArrowType:
    """Parse a type string, raising ArrowTypeError with a message fit for a user."""
    if not isinstance(text, str) or not text.strip():
        raise ArrowTypeError("Arrow type must be a non-empty string")
    return _Parser(text).parse()
