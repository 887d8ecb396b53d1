"""Document metadata and the filters searches take on it.

Metadata is a flat JSON object: up to `MAX_KEYS` keys (non-empty printable strings of at most `MAX_KEY_CHARS`
characters, without quotes or backslashes, not starting with `$`) whose values are strings, finite numbers or
booleans. It is stored as JSON text beside each document in the document store and filtered there with SQLite's JSON
functions: a filter is one scan of the store, never Python objects per document.

A filter is a JSON object of conditions, all of which must hold (AND):

- `{"lang": "en"}`: equality (a string, number or boolean);
- `{"lang": {"in": ["en", "de"]}}`: one of the listed values;
- `{"year": {"gte": 2015, "lt": 2020}}`: a range on a number (`gt`, `gte`, `lt`, `lte`, together as needed);
- `{"lang": {"eq": "en"}}`: equality spelled out.

A document lacking a key never matches a condition on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_KEYS = 64
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 1024
MAX_IN_VALUES = 1000
RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPS = ("eq", "in", *RANGE_OPS)
Scalar = str | int | float | bool


class MetadataError(ValueError):
    """Metadata or a filter that is not of the accepted shape; the message names the key and what is allowed."""


def _check_key(key: object, what: str) -> str:
    if (
        not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS or key.startswith("$")
        or any(c in key for c in '"\\') or not key.isprintable()
    ):  # fmt: skip
        raise MetadataError(f"{what} key {key!r:.80} must be a non-empty printable string of at most {MAX_KEY_CHARS} "
                            "characters, without quotes or backslashes, not starting with '$'")  # fmt: skip
    return key


def _check_scalar(value: object, where: str) -> Scalar:
    if isinstance(value, bool) or isinstance(value, int):
        if not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise MetadataError(f"{where}: integer {value} does not fit 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MetadataError(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise MetadataError(f"{where}: strings hold at most {MAX_VALUE_CHARS} characters, got {len(value)}")
        return value
    kind = "null" if value is None else type(value).__name__
    raise MetadataError(f"{where} is {kind}: metadata values are strings, numbers or booleans (a flat object)")


def check_metadata(metadata: object) -> dict[str, Scalar]:
    """`metadata` as a flat dict of scalars; raise MetadataError naming the first problem."""
    if not isinstance(metadata, Mapping):
        kind = "null" if metadata is None else type(metadata).__name__
        raise MetadataError(
            f"metadata must be a JSON object of string keys to strings, numbers or booleans, got {kind}"
        )
    if len(metadata) > MAX_KEYS:
        raise MetadataError(f"metadata holds at most {MAX_KEYS} keys, got {len(metadata)}")
    return {_check_key(key, "metadata"): _check_scalar(value, f"metadata[{key!r}]") for key, value in metadata.items()}


def metadata_json(metadata: Mapping[str, Scalar] | None) -> str | None:
    """The stored form of checked metadata (None for none or empty)."""
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":")) if metadata else None


def scalar_metadata(metadata: object) -> tuple[dict[str, Scalar], list[str]]:
    """The scalar entries of a corpus record's metadata (a BEIR `metadata` object may nest); and the keys left out."""
    if not isinstance(metadata, Mapping):
        return {}, []
    kept: dict[str, Scalar] = {}
    dropped = []
    for key, value in metadata.items():
        try:
            if len(kept) >= MAX_KEYS:
                raise MetadataError(f"more than {MAX_KEYS} keys")
            kept[_check_key(key, "metadata")] = _check_scalar(value, "metadata")
        except MetadataError:
            dropped.append(str(key))
    return kept, dropped


@dataclass(frozen=True)
class Condition:
    key: str
    op: str  # one of OPS
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class MetadataFilter:
    """Conditions that must all hold; `where()` is the SQL that selects the matching rows."""

    conditions: tuple[Condition, ...]

    def where(self, column: str = "meta") -> tuple[str, list[Any]]:
        """A SQL boolean expression over the JSON `column` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for cond in self.conditions:
            path = f'$."{cond.key}"'  # quoted (keys hold no quote or backslash), as stored: not ASCII-escaped
            value = f"json_extract({column}, ?)"
            kind = f"json_type({column}, ?)"
            if cond.op == "eq":
                clauses.append(_equal(value, kind, cond.values[0], path, params))
            elif cond.op == "in":
                parts = [_equal(value, kind, v, path, params) for v in cond.values]
                clauses.append("(" + " OR ".join(parts) + ")")
            else:
                clauses.append(f"({kind} IN ('integer', 'real') AND {value} {RANGE_OPS[cond.op]} ?)")
                params.extend([path, path, cond.values[0]])
        return " AND ".join(clauses) or "1", params

    def indexed(self) -> tuple[str, list[Any]]:
        """SQL selecting the matching positions, in order, from the metadata index (`indexes.docstore.META_TABLES`:
        one row per document and key): one indexed lookup per condition, intersected."""
        parts: list[str] = []
        params: list[Any] = []
        for cond in self.conditions:
            if cond.op in ("eq", "in"):
                by_kind: dict[str, list[Scalar]] = {}
                for value in cond.values:
                    kind, stored = _typed(value)
                    by_kind.setdefault(kind, []).append(stored)
                ors = [f"(kind = ? AND value IN ({','.join('?' * len(values))}))" for values in by_kind.values()]
                parts.append(f"SELECT pos FROM doc_meta WHERE key = ? AND ({' OR '.join(ors)})")
                params.append(cond.key)
                for kind, values in by_kind.items():
                    params.extend([kind, *values])
            else:
                parts.append(f"SELECT pos FROM doc_meta WHERE key = ? AND kind = 'n' AND value {RANGE_OPS[cond.op]} ?")
                params.extend([cond.key, cond.values[0]])
        return " INTERSECT ".join(parts) + " ORDER BY pos", params

    def describe(self) -> str:
        return " and ".join(
            f"{c.key} {c.op} {list(c.values) if c.op == 'in' else c.values[0]!r}" for c in self.conditions
        )


def _typed(value: Scalar) -> tuple[str, Scalar]:
    """(kind, stored value) as the metadata index keeps them: booleans apart from numbers, as 1/0."""
    if isinstance(value, bool):
        return "b", int(value)
    return ("s", value) if isinstance(value, str) else ("n", value)


def _equal(value: str, kind: str, wanted: Scalar, path: str, params: list[Any]) -> str:
    """Equality that keeps types apart (JSON true is not 1, "1" is not 1)."""
    if isinstance(wanted, bool):
        params.extend([path])
        return f"({kind} = '{'true' if wanted else 'false'}')"
    if isinstance(wanted, str):
        params.extend([path, path, wanted])
        return f"({kind} = 'text' AND {value} = ?)"
    params.extend([path, path, wanted])
    return f"({kind} IN ('integer', 'real') AND {value} = ?)"


def parse_filter(spec: object) -> MetadataFilter | None:
    """A filter from its JSON form (None or {} for none); raise MetadataError naming the key at fault and the
    operators allowed."""
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise MetadataError(f"filter is not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(spec, Mapping):
        raise MetadataError(f"filter must be a JSON object of metadata keys to conditions, got {type(spec).__name__}")
    if len(spec) > MAX_KEYS:
        raise MetadataError(f"a filter holds at most {MAX_KEYS} keys, got {len(spec)}")
    conditions: list[Condition] = []
    for key, condition in spec.items():
        _check_key(key, "filter")
        if not isinstance(condition, Mapping):
            conditions.append(Condition(key, "eq", (_check_scalar(condition, f"filter[{key!r}]"),)))
            continue
        if not condition:
            raise MetadataError(f"filter[{key!r}] is an empty object: give one of {', '.join(OPS)}")
        for op, operand in condition.items():
            conditions.append(_condition(key, op, operand))
    return MetadataFilter(tuple(conditions)) if conditions else None


def _condition(key: str, op: object, operand: object) -> Condition:
    where = f"filter[{key!r}][{op!r}]"
    if op == "eq":
        return Condition(key, "eq", (_check_scalar(operand, where),))
    if op == "in":
        if not isinstance(operand, Sequence) or isinstance(operand, str) or not 1 <= len(operand) <= MAX_IN_VALUES:
            raise MetadataError(f"{where} needs a list of 1 to {MAX_IN_VALUES} strings, numbers or booleans")
        return Condition(key, "in", tuple(_check_scalar(v, where) for v in operand))
    if op in RANGE_OPS:
        if isinstance(operand, bool) or not isinstance(operand, int | float) or not math.isfinite(operand):
            raise MetadataError(f"{where} needs a finite number (ranges apply to numbers)")
        return Condition(key, str(op), (operand,))
    raise MetadataError(f"filter[{key!r}]: unknown operator {op!r}; use one of {', '.join(OPS)}")
