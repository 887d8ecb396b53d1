"""Document metadata and filters: checks with messages naming the key, type-exact matching in the document store
(against a Python evaluation of the same filter), and the schema 1 store (no metadata) refusing and upgrading."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexes.docstore import DOC_COLUMNS, DisplayDoc, DocStore, write_doc_store
from indexes.filters import MAX_KEYS, MetadataError, check_metadata, parse_filter, scalar_metadata
from indexes.livestore import LiveStore

# --- a Python evaluation of a filter (the reference the store's SQL is checked against) ----------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(value: object, wanted: object) -> bool:
    """JSON equality keeping types apart: true is not 1, "1" is not 1 (1 and 1.0 are the same number)."""
    if isinstance(wanted, bool):
        return isinstance(value, bool) and value == wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value == wanted
    return _is_number(value) and value == wanted


RANGES = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _passes(metadata: dict | None, spec: dict) -> bool:
    """Whether `metadata` passes the filter `spec` (its JSON form), evaluated in Python."""
    metadata = metadata or {}
    for key, condition in spec.items():
        if key not in metadata:
            return False
        value = metadata[key]
        ops = condition if isinstance(condition, dict) else {"eq": condition}
        for op, operand in ops.items():
            if op == "eq" and not _equal(value, operand):
                return False
            if op == "in" and not any(_equal(value, v) for v in operand):
                return False
            if op in RANGES and not (_is_number(value) and RANGES[op](value, operand)):
                return False
    return True


@pytest.fixture
def make_store(tmp_path: Path):
    """`make_store(metadatas)`: a document store holding one document per metadata dict (None: no metadata)."""
    made = []

    def make(metadatas: list[dict | None]) -> DocStore:
        path = tmp_path / f"docs{len(made)}.sqlite"
        ids = [f"d{i}" for i in range(len(metadatas))]
        write_doc_store(path, ids, [DisplayDoc(f"t{i}", f"s{i}", m) for i, m in enumerate(metadatas)])
        store = DocStore.open(path)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _matching(store: DocStore, spec: object) -> list[int]:
    where = parse_filter(spec)
    assert where is not None
    return store.matching(where).tolist()


# --- equality, in, ranges, missing keys ------------------------------------------------------------------------

TYPED = [{"v": 1}, {"v": "1"}, {"v": True}, {"v": 1.0}, {"v": False}, {"v": 0}, {"other": 1}, None, {"v": "true"}]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"v": 1}, [0, 3]),  # the number 1 (1.0 is the same number), never "1" nor true
        ({"v": "1"}, [1]),
        ({"v": True}, [2]),
        ({"v": False}, [4]),
        ({"v": 0}, [5]),  # not false
        ({"v": {"eq": "true"}}, [8]),  # the string, not the boolean
        ({"v": {"in": [1, "true"]}}, [0, 3, 8]),
        ({"v": {"in": [True, "1"]}}, [1, 2]),
        ({"v": {"gte": 0}}, [0, 3, 5]),  # ranges apply to numbers only (not booleans, not "1")
        ({"v": {"gt": 0, "lte": 1}}, [0, 3]),
        ({"other": 1}, [6]),
        ({"missing": {"in": [1, "1", True]}}, []),  # a key no document has never matches
    ],
)
def test_equality_keeps_json_types_apart(make_store, spec, expected):
    store = make_store(TYPED)
    assert [i for i, m in enumerate(TYPED) if _passes(m, spec)] == expected, "the reference disagrees"
    assert _matching(store, spec) == expected


def test_ranges_combine_and_conditions_are_anded(make_store):
    metas = [{"year": 2000 + i, "lang": "en" if i % 3 else "de"} for i in range(30)] + [{"lang": "en"}]
    store = make_store(metas)
    assert _matching(store, {"year": {"gte": 2010, "lt": 2015}}) == [10, 11, 12, 13, 14]
    assert _matching(store, {"year": {"gt": 2010, "lte": 2015}}) == [11, 12, 13, 14, 15]
    assert _matching(store, {"year": {"gt": 2010.5, "lt": 2012.5}}) == [11, 12]  # a float bound on integers
    assert _matching(store, {"year": {"gte": 2010, "lt": 2015}, "lang": "de"}) == [12]
    assert _matching(store, {"lang": "en", "year": {"lt": 2003}}) == [1, 2]  # 30 has lang but no year
    assert _matching(store, {"lang": "en"}) == [i for i in range(30) if i % 3] + [30]
    assert _matching(store, {"year": {"gt": 2050}}) == []
    assert parse_filter({}) is None and parse_filter(None) is None  # no filter at all


def test_a_filter_may_be_given_as_json_text(make_store):
    store = make_store([{"lang": "en"}, {"lang": "de"}, {"lang": "fr"}])
    assert _matching(store, '{"lang": {"in": ["en", "fr"]}}') == [0, 2]


@pytest.mark.parametrize("key", ["a.b", "x y", "[0]", "*", "a$b", "année", "日本", "a'b"])
def test_any_accepted_key_can_be_filtered_on(make_store, key):
    """Keys are printable strings without quotes or backslashes, not starting with '$' (`check_metadata` accepts
    all of these); the JSON path built for a key must reach it however it is spelt."""
    assert check_metadata({key: "v"}) == {key: "v"}
    store = make_store([{key: "v"}, {key: "w"}, {"other": "v"}])
    assert _matching(store, {key: "v"}) == [0]
    assert _matching(store, {key: {"in": ["v", "w"]}}) == [0, 1]


def _random_metadata(rng: np.random.Generator) -> dict | None:
    if rng.random() < 0.05:
        return None
    pools = {
        "lang": ["en", "de", "fr", "1", "true"],
        "year": list(range(1995, 2025)),
        "score": [round(float(x), 3) for x in rng.uniform(-1, 1, 8)],
        "flag": [True, False],
        "mixed": [1, "1", True, False, 0, 1.5, 2, "2", "x"],
    }
    return {key: pool[rng.integers(len(pool))] for key, pool in pools.items() if rng.random() < 0.8}


def _random_filter(rng: np.random.Generator) -> dict:
    keys = ["lang", "year", "score", "flag", "mixed", "absent"]
    values = ["en", "de", "1", "true", 1, 0, 2, 1.5, True, False, 2003, 2010, 0.25, "x"]
    spec: dict = {}
    for key in rng.choice(keys, size=int(rng.integers(1, 3)), replace=False):
        kind = rng.integers(4)
        if kind == 0:
            spec[str(key)] = values[rng.integers(len(values))]
        elif kind == 1:
            chosen = rng.choice(len(values), size=int(rng.integers(1, 4)), replace=False)
            spec[str(key)] = {"in": [values[i] for i in chosen]}
        elif kind == 2:
            spec[str(key)] = {"eq": values[rng.integers(len(values))]}
        else:
            lo = float(rng.choice([-0.5, 0, 1, 2000, 2005]))
            ops = rng.choice(list(RANGES), size=int(rng.integers(1, 3)), replace=False)
            bounds = {"gt": lo, "gte": lo, "lt": lo + float(rng.choice([0.5, 1, 12])), "lte": lo + 1}
            spec[str(key)] = {str(op): bounds[str(op)] for op in ops}
    return spec


@pytest.mark.parametrize("path", ["metadata index", "json scan"])
def test_store_filters_equal_a_python_evaluation_over_random_metadata(make_store, path):
    """Both ways a store answers a filter: the metadata index (every store written now), and the scan of each
    document's JSON (a store written before the index existed, opened read-only)."""
    rng = np.random.default_rng(7)
    metas = [_random_metadata(rng) for _ in range(300)]
    store = make_store(metas)
    if path == "json scan":
        store.meta_indexed = False
    nonempty = 0
    for _ in range(300):
        spec = _random_filter(rng)
        want = [i for i, m in enumerate(metas) if _passes(m, spec)]
        assert _matching(store, spec) == want, spec
        nonempty += bool(want)
    assert nonempty > 25, "the random filters should often match something"


# --- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"a": {"b": 1}}, "metadata['a'] is dict"),
        ({"a": [1, 2]}, "metadata['a'] is list"),
        ({"a": None}, "metadata['a'] is null"),
        ({"a": math.nan}, "metadata['a']: nan is not a finite number"),
        ({"a": -math.inf}, "metadata['a']: -inf is not a finite number"),
        ({"a": 2**63}, "metadata['a']: integer"),
        ({"a": "x" * 1025}, "metadata['a']: strings hold at most 1024 characters"),
        ({"": 1}, "metadata key '' must be a non-empty printable string"),
        ({"$x": 1}, "metadata key '$x' must be"),
        ({"k" * 65: 1}, "at most 64 characters"),
        ({1: "a"}, "metadata key 1 must be"),
        ({f"k{i}": i for i in range(MAX_KEYS + 1)}, f"at most {MAX_KEYS} keys, got {MAX_KEYS + 1}"),
        (None, "got null"),
        (["a"], "got list"),
    ],
)
def test_bad_metadata_is_refused_naming_the_key(metadata, message):
    with pytest.raises(MetadataError) as raised:
        check_metadata(metadata)
    assert message in str(raised.value)


def test_good_metadata_is_kept_as_given():
    metadata = {"lang": "en", "year": 2020, "score": 0.5, "flag": False, "x" * 64: "y" * 1024, "big": 2**63 - 1}
    assert check_metadata(metadata) == metadata
    assert check_metadata({}) == {}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"lang": {"like": "en"}}, "filter['lang']: unknown operator 'like'"),
        ({"lang": {}}, "filter['lang'] is an empty object"),
        ({"lang": {"in": "en"}}, "filter['lang']['in'] needs a list"),
        ({"lang": {"in": 5}}, "filter['lang']['in'] needs a list"),
        ({"lang": {"in": []}}, "filter['lang']['in'] needs a list of 1 to"),
        ({"lang": {"in": [["en"]]}}, "filter['lang']['in'] is list"),
        ({"year": {"gt": "2010"}}, "filter['year']['gt'] needs a finite number"),
        ({"year": {"lte": True}}, "filter['year']['lte'] needs a finite number"),
        ({"year": {"lt": math.inf}}, "filter['year']['lt'] needs a finite number"),
        ({"year": None}, "filter['year'] is null"),
        ({"year": [2010]}, "filter['year'] is list"),
        ({"$year": 1}, "filter key '$year' must be"),
        ('{"lang": ', "filter is not valid JSON"),
        ("[1, 2]", "filter must be a JSON object"),
        (["lang"], "filter must be a JSON object"),
    ],
)
def test_bad_filters_are_refused_naming_the_key(spec, message):
    with pytest.raises(MetadataError) as raised:
        parse_filter(spec)
    assert message in str(raised.value)


def test_scalar_metadata_keeps_scalars_and_names_what_it_drops():
    kept, dropped = scalar_metadata({"a": 1, "nested": {"x": 1}, "b": "x", "list": [1], "none": None, "c": True,
                                     "nan": math.nan, "$bad": 1})  # fmt: skip
    assert kept == {"a": 1, "b": "x", "c": True}
    assert dropped == ["nested", "list", "none", "nan", "$bad"]
    assert scalar_metadata(None) == ({}, [])
    assert scalar_metadata(["a"]) == ({}, [])


def test_scalar_metadata_names_keys_left_out_past_the_limit():
    """Past MAX_KEYS entries are left out too; the contract ("and the keys left out") says they are named, so a
    corpus loader can count them."""
    metadata = {f"k{i}": i for i in range(MAX_KEYS + 6)}
    kept, dropped = scalar_metadata(metadata)
    assert len(kept) == MAX_KEYS
    assert set(kept) | set(dropped) == set(metadata)


# --- schema 1 stores: no metadata, upgraded by opening for writes ------------------------------------------------


def _write_schema_1(path: Path, n: int) -> None:
    """A document store as schema 1 wrote it (no meta, no version, no tables of writes)."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE docs (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, "
                       "snippet TEXT NOT NULL)")  # fmt: skip
    connection.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", [(i, f"d{i}", f"t{i}", f"s{i}") for i in range(n)])
    connection.execute("PRAGMA user_version=1")
    connection.commit()
    connection.close()


def test_a_schema_1_store_refuses_filters_and_is_upgraded_for_writes(tmp_path):
    path = tmp_path / "docs.sqlite"
    _write_schema_1(path, 5)
    old = DocStore.open(path)
    assert old.schema == 1 and len(old) == 5
    assert [c for c in DOC_COLUMNS[1]] == ["pos", "id", "title", "snippet"]
    with pytest.raises(MetadataError, match="keeps no metadata .* rebuild it with `semsearch index`"):
        old.matching(parse_filter({"lang": "en"}))
    assert old.get("d3") == {"id": "d3", "title": "t3", "snippet": "s3", "metadata": {}, "version": 0,
                             "state": "live"}  # fmt: skip
    assert old.next_pos == 5 and not old.written
    old.close()

    live = LiveStore.open(path)
    assert live.schema == 2 and len(live) == 5
    assert live.records(range(5))[4].title == "t4"
    assert live.positions(["d0", "d4"]).tolist() == [0, 4]
    assert live.matching(parse_filter({"lang": "en"})).tolist() == []  # no document has metadata yet
    assert live.next_pos == 5 and live.version == 0
    live.log_upserts([_new_doc("n0", {"lang": "en"})])
    live.close()

    upgraded = DocStore.open(path)
    assert upgraded.schema == 2
    assert [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(docs)")] == DOC_COLUMNS[2]
    assert upgraded.get("d2")["title"] == "t2" and upgraded.get("n0")["state"] == "encoding"
    assert upgraded.counts() == {"documents": 5, "pending": 1, "tombstones": 0, "next_pos": 5, "version": 1}
    upgraded.close()


def _new_doc(doc_id: str, metadata: dict | None = None):
    from indexes.livestore import NewDoc

    return NewDoc(doc_id, f"title {doc_id}", f"text {doc_id}", metadata)


@pytest.mark.parametrize("key", ['q"k', "back\\slash", "tab\tkey", "$x", ""])
def test_keys_a_json_path_cannot_quote_are_refused_by_name(key):
    with pytest.raises(MetadataError, match="without quotes or backslashes"):
        check_metadata({key: "v"})
    with pytest.raises(MetadataError, match="without quotes or backslashes"):
        parse_filter({key: "v"})


def test_a_store_without_the_metadata_index_scans_and_gets_it_when_opened_for_writes(tmp_path):
    """A store written before the metadata index existed: read-only it answers by scanning each document's JSON;
    opened for writes it builds the index from that JSON, and keeps it current through upserts and deletes."""
    rng = np.random.default_rng(3)
    metas = [_random_metadata(rng) for _ in range(120)]
    path = tmp_path / "docs.sqlite"
    write_doc_store(path, [f"d{i}" for i in range(120)], [DisplayDoc(f"t{i}", "s", m) for i, m in enumerate(metas)])
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE doc_meta")
    specs = [_random_filter(rng) for _ in range(60)]
    old = DocStore.open(path)
    assert not old.meta_indexed
    assert [_matching(old, spec) for spec in specs] == [
        [i for i, m in enumerate(metas) if _passes(m, spec)] for spec in specs
    ]
    old.close()

    live = LiveStore.open(path)
    assert live.meta_indexed
    live.log_upserts([_new_doc("d5", {"lang": "de", "year": 2001}), _new_doc("n1", {"lang": "en", "flag": True})])
    live.apply_encoded([(p, np.zeros(4, dtype=np.float32)) for p in live.pending()])
    live.delete(["d7"])
    indexed = [_matching(live, spec) for spec in specs]
    live.meta_indexed = False
    assert indexed == [_matching(live, spec) for spec in specs]  # the index equals the JSON it was built from
    assert _matching(live, {"lang": "de", "year": 2001}) == [120]  # d5's new state, at its new position
    assert 7 not in _matching(live, {"year": {"gte": 0}})
    live.close()
