"""config.pbtxt's `version_policy`: which published versions of a model are served.

Triton's ModelVersionPolicy is one of `latest { num_versions: N }` (the N highest versions; N = 1 is the
default when config.pbtxt or the clause is absent), `all { }`, or `specific { versions: [1, 3] }`. The
runtime must not need tritonclient (which ships ModelConfig's protobuf module), so config.pbtxt is read
by a small reader of protobuf's text format: it parses any well-formed file into nested fields and looks
at `version_policy` only. A test checks it against protobuf's own text_format parser and ModelConfig.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<punct>[{}\[\]<>:,;])""",
    re.X,
)
CLOSING = {"{": "}", "<": ">"}
KINDS = ("latest", "all", "specific")


class PolicyError(ValueError):
    """config.pbtxt cannot be read, or its version_policy is not valid; the message says why."""


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1  # latest: how many of the highest versions
    versions: tuple[int, ...] = ()  # specific: exactly these

    def candidates(self, available: list[int]) -> list[int]:
        """Versions to try, best first: the loader serves the first `wanted` that load."""
        chosen = self.versions if self.kind == "specific" else available
        return sorted(set(chosen), reverse=True)

    @property
    def wanted(self) -> int | None:
        """How many versions to serve (None: every candidate that loads)."""
        return self.num_versions if self.kind == "latest" else None

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        return "all" if self.kind == "all" else f"specific {list(self.versions)}"


DEFAULT = VersionPolicy()


def tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match:
            raise PolicyError(f"config.pbtxt: cannot read {text[position : position + 20]!r}")
        position = match.end()
        if match.lastgroup:
            found.append((match.lastgroup, match.group()))
    return found


def parse(text: str) -> dict:
    """Protobuf text format → {field: [values]}, a message value being such a dict again."""
    return parse_fields(tokens(text), 0, None)[0]


def parse_fields(items, position: int, end: str | None) -> tuple[dict, int]:
    fields: dict[str, list] = {}
    while True:
        if position == len(items):
            if end is not None:
                raise PolicyError(f"config.pbtxt: missing {end!r} at the end")
            return fields, position
        kind, text = items[position]
        if text == end and kind == "punct":
            return fields, position + 1
        if kind != "name":
            raise PolicyError(f"config.pbtxt: expected a field name, got {text!r}")
        position += 1
        if position < len(items) and items[position][1] == ":":
            position += 1
        values, position = parse_value(items, position)
        fields.setdefault(text, []).extend(values)
        if position < len(items) and items[position][1] in (",", ";"):
            position += 1


def parse_value(items, position: int) -> tuple[list, int]:
    if position == len(items):
        raise PolicyError("config.pbtxt: a field has no value")
    kind, text = items[position]
    if text in CLOSING:
        message, position = parse_fields(items, position + 1, CLOSING[text])
        return [message], position
    if text == "[":
        values, position = [], position + 1
        while position < len(items) and items[position][1] != "]":
            value, position = parse_value(items, position)
            values += value
            if position < len(items) and items[position][1] == ",":
                position += 1
        if position == len(items):
            raise PolicyError("config.pbtxt: missing ']'")
        return values, position + 1
    if kind == "number":
        number = text.rstrip("fF")
        try:
            return [int(number, 0)], position + 1
        except ValueError:
            return [float(number)], position + 1
    if kind in ("string", "name"):
        return [text], position + 1
    raise PolicyError(f"config.pbtxt: unexpected {text!r}")


def version_policy(text: str) -> VersionPolicy:
    """The version policy of a config.pbtxt (Triton's default when it has none)."""
    clauses = parse(text).get("version_policy", [])
    if not clauses:
        return DEFAULT
    if len(clauses) > 1 or not isinstance(clauses[0], dict):
        raise PolicyError("config.pbtxt: version_policy must be given once, as a message")
    clause = clauses[0]
    unknown = sorted(set(clause) - set(KINDS))
    if unknown or len(clause) != 1 or any(len(v) != 1 or not isinstance(v[0], dict) for v in clause.values()):
        raise PolicyError(
            "config.pbtxt: version_policy must hold exactly one of latest { }, all { }, specific { }"
        )
    (kind, (body,)) = next(iter(clause.items()))
    allowed = {"latest": {"num_versions"}, "all": set(), "specific": {"versions"}}[kind]
    if set(body) - allowed:
        unknown = sorted(set(body) - allowed)
        raise PolicyError(f"config.pbtxt: version_policy {kind} has unknown fields {unknown}")
    if kind == "latest":
        count = body.get("num_versions", [0])
        if len(count) != 1 or type(count[0]) is not int or count[0] < 1:
            raise PolicyError("config.pbtxt: version_policy latest needs num_versions >= 1")
        return VersionPolicy("latest", num_versions=count[0])
    if kind == "specific":
        versions = body.get("versions", [])
        if not versions or not all(type(v) is int and v >= 0 for v in versions):
            raise PolicyError("config.pbtxt: version_policy specific needs versions: [ v, ... ] (integers)")
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    return VersionPolicy("all")
