"""Known failure classes are one line on stderr, naming the file and the fix, and exit status 2 (issue 10, item 5):
a damaged index directory, meta.json, ids or docs file; a missing or corrupt ONNX model, tokenizer or onnx_config.json;
an unknown encoder type; a dimension mismatch; a bad port; an undecodable or malformed corpus. `semsearch serve`
reports every one of them before the server starts. `--verbose` adds the traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from compression.encoders import FakeEncoder
from compression.encoders.onnx import OnnxEncoder
from indexes.faiss_index import IndexSpec
from search.cli import app
from search.data.datasets import load_beir
from search.pipeline import build_index_dir

WORDS = (
    "vitamin d deficiency bone density calcium supplements tumor cells cancer chemotherapy metastasis oncology "
    "cardiac heart failure blood pressure artery neurons brain cortex memory synapse viral infection influenza "
    "vaccine immune response study"
).split()


def build_tiny_onnx(folder: Path, dim: int) -> Path:
    """A torch-free ONNX model folder: a word-level tokenizer and a graph that averages a random embedding table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True)
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    table = np.random.default_rng(dim).standard_normal((len(vocab), dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
            helper.make_node("ReduceMean", ["tokens"], ["sentence_embedding"], axes=[1], keepdims=0),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    config = {"dim": dim, "max_seq_length": 64, "inputs": ["input_ids", "attention_mask"], "pad_token": "[PAD]",
              "pad_token_id": 0, "source_path": "tiny", "source_fingerprint": "tiny", "opset": 13}  # fmt: skip
    (folder / "onnx_config.json").write_text(json.dumps(config))
    return folder


@dataclass(frozen=True)
class Built:
    root: Path
    fake: Path  # a Flat index built with FakeEncoder(32)
    onnx: Path  # a Flat index built with the tiny 16-d ONNX model
    model: Path  # that model's folder
    model8: Path  # an 8-d ONNX model folder


@pytest.fixture
def built(tmp_path: Path, beir_dir: Path) -> Built:
    dataset = load_beir(beir_dir)
    fake, onnx_index = tmp_path / "fake", tmp_path / "onnx"
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("Flat"), fake, show_progress=False)
    model = build_tiny_onnx(tmp_path / "model16", 16)
    build_index_dir(dataset, OnnxEncoder(model, threads=1), IndexSpec("Flat"), onnx_index, show_progress=False)
    return Built(tmp_path, fake, onnx_index, model, build_tiny_onnx(tmp_path / "model8", 8))


def hurt(
    index_dir: Path, target: Path, damage: Callable[[Path], object], names: Path | None = None
) -> tuple[Path, Path]:
    """Damage `target`; return the index dir to open and what the message must name (default: `target`)."""
    damage(target)
    return index_dir, names if names is not None else target


def garbage(data: str | bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)


def edit_json(key: str, value: object, inside: str | None = None) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        (data[inside] if inside else data)[key] = value
        path.write_text(json.dumps(data))

    return edit


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


# case -> damage(built), returning (the index dir to open, the file the one-line message must name)
CASES: dict[str, Callable[[Built], tuple[Path, Path]]] = {
    "truncated index.faiss": lambda b: hurt(b.fake, b.fake / "index.faiss", truncate),
    "garbage index.faiss": lambda b: hurt(b.fake, b.fake / "index.faiss", garbage(b"\x00garbage")),
    "meta.json a list": lambda b: hurt(b.fake, b.fake / "meta.json", garbage("[1, 2, 3]")),
    "meta.json missing keys": lambda b: hurt(b.fake, b.fake / "meta.json", garbage('{"format_version": 2}')),
    "meta.json of format 1": lambda b: hurt(b.fake, b.fake / "meta.json", edit_json("format_version", 1), b.fake),
    "meta.json malformed": lambda b: hurt(b.fake, b.fake / "meta.json", garbage('{"a": ')),
    "docs.sqlite garbage": lambda b: hurt(b.fake, b.fake / "docs.sqlite", garbage(b"garbage" * 100)),
    "docs.sqlite missing": lambda b: hurt(b.fake, b.fake / "docs.sqlite", Path.unlink, b.fake),
    "vectors.npy short": lambda b: hurt(b.fake, b.fake / "vectors.npy", truncate),
    "vectors.npy missing": lambda b: hurt(b.fake, b.fake / "vectors.npy", Path.unlink),
    "unknown encoder type": lambda b: hurt(b.fake, b.fake / "meta.json", edit_json("type", "weird", "encoder")),
    "encoder dim != index dim": lambda b: hurt(b.fake, b.fake / "meta.json", edit_json("dim", 64, "encoder")),
    "model folder missing": lambda b: hurt(b.onnx, b.model, shutil.rmtree, b.onnx / "meta.json"),
    "model.onnx missing": lambda b: hurt(b.onnx, b.model / "model.onnx", Path.unlink),
    "model.onnx garbage": lambda b: hurt(b.onnx, b.model / "model.onnx", garbage(b"garbage")),
    "tokenizer.json garbage": lambda b: hurt(b.onnx, b.model / "tokenizer.json", garbage("{")),
    "onnx_config.json malformed": lambda b: hurt(b.onnx, b.model / "onnx_config.json", garbage("{")),
    "onnx_config.json fields": lambda b: hurt(b.onnx, b.model / "onnx_config.json", garbage('{"dim": 16}')),
    "graph width != onnx_config dim": lambda b: hurt(
        b.onnx, b.model / "onnx_config.json", edit_json("dim", 24), b.model / "model.onnx"
    ),
    "index dim != encoder dim": lambda b: hurt(
        b.onnx, b.onnx / "meta.json", edit_json("path", str(b.model8), "encoder"), b.onnx
    ),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_one_line_error(result: Result, names: Path | str) -> str:
    """Exit status 2, and stderr is one line `error: ...` naming `names`, without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert str(names) in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", ["search", "eval", "serve"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_index_or_model_is_one_line_and_exit_2(built, monkeypatch, case, command):
    import uvicorn

    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(args))
    index_dir, named = CASES[case](built)
    args = {
        "search": ["search", "--index-dir", str(index_dir), "vitamin"],
        "eval": ["eval", "--index-dir", str(index_dir), "--dataset", str(built.root / "tiny")],
        "serve": ["serve", "--index-dir", str(index_dir), "--port", str(free_port())],
    }[command]
    result = CliRunner().invoke(app, args)
    assert_one_line_error(result, named)
    assert not started, "the server started"


def test_the_cases_load_before_they_are_damaged(built, monkeypatch):
    """The fixtures are sound: each index searches, and serve starts on them."""
    import uvicorn

    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(args))
    for index_dir in (built.fake, built.onnx):
        result = CliRunner().invoke(app, ["search", "--index-dir", str(index_dir), "vitamin", "--json"])
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["hits"]) == 10, result.output
    port = str(free_port())
    result = CliRunner().invoke(
        app, ["serve", f"--pipeline=a={built.fake}", f"--pipeline=b={built.onnx}", "--port", port]
    )
    assert result.exit_code == 0, result.output
    assert len(started) == 1, result.output


def test_serve_refuses_a_bad_port_or_one_in_use(built, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("the server started"))
    result = CliRunner().invoke(app, ["serve", "--index-dir", str(built.fake), "--port", "99999"])
    assert "--port 99999 is not a TCP port: give 1..65535" in assert_one_line_error(result, "99999")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--index-dir", str(built.fake), "--port", str(port)])
    assert "choose another --port" in assert_one_line_error(result, f"127.0.0.1:{port}")


def test_verbose_adds_the_traceback(built):
    (built.fake / "meta.json").write_text("[1, 2, 3]")
    result = CliRunner().invoke(app, ["--verbose", "search", "--index-dir", str(built.fake), "vitamin"])
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "IndexDirError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {built.fake / 'meta.json'}")


# --- corpora: undecodable bytes and malformed records name the file and line -----------------------------------------


def corpus_file(name: str, data: bytes, names: str) -> Callable[[Path, Path], tuple[Path, str]]:
    """A corpus file `name` holding `data`; the message must name `FILE` + `names` (e.g. ":2")."""

    def make(tmp: Path, beir: Path) -> tuple[Path, str]:
        (tmp / name).write_bytes(data)
        return tmp / name, f"{tmp / name}{names}"

    return make


def beir_appended(relative: str, data: bytes, names: str) -> Callable[[Path, Path], tuple[Path, str]]:
    """The tiny BEIR folder with `data` appended to one of its files."""

    def make(tmp: Path, beir: Path) -> tuple[Path, str]:
        (beir / relative).write_bytes((beir / relative).read_bytes() + data)
        return beir, f"{beir / relative}{names}"

    return make


CORPORA: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {
    "jsonl not UTF-8": corpus_file("c.jsonl", b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n', ":2"),
    "csv not UTF-8": corpus_file("c.csv", b"id,text\n1,ok\n2,caf\xe9\n", ":3"),
    "tsv not UTF-8": corpus_file("c.tsv", b"id\ttext\n1\t\xfe\n", ":2"),
    "BEIR corpus not UTF-8": beir_appended("corpus.jsonl", b'{"_id": "z", "text": "\xff"}\n', ":61"),
    "BEIR queries not UTF-8": beir_appended("queries.jsonl", b'{"_id": "qz", "text": "\xff"}\n', ":11"),
    "BEIR qrels not UTF-8": beir_appended("qrels/test.tsv", b"q0\t\xff\t1\n", ":12"),
    "JSON list as text": corpus_file(
        "c.jsonl", b'{"_id": "a", "text": ["a", "list"]}\n', ":1: 'text' must be a string, got a list"
    ),
    "CSV unterminated quote": corpus_file(
        "c.csv", b'id,text\n1,"first\n2,second\n3,third\n', ":2: unterminated quoted field"
    ),
}


@pytest.mark.parametrize("case", list(CORPORA))
def test_a_bad_corpus_is_one_line_naming_file_and_line(tmp_path, beir_dir, case):
    dataset, named = CORPORA[case](tmp_path, beir_dir)
    args = ["index", "--dataset", str(dataset), "--encoder", "fake:8", "--out", str(tmp_path / "out")]
    assert_one_line_error(CliRunner().invoke(app, args), named)
    assert not (tmp_path / "out").exists()


def test_on_bad_record_skip_counts_the_skipped_records_in_meta(tmp_path, usage_error):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"_id": "a", "text": "alpha"}\n{"_id": "b", "text": ["x"]}\n{"_id": "c", "text": "\\u200b"}\n'
        '{"_id": "d", "text": "delta"}\n'
    )
    out = tmp_path / "out"
    args = ["index", "--dataset", str(corpus), "--encoder", "fake:8", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, [*args, "--on-bad-record", "skip"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_records"] == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped_records"] == 2
    assert meta["ntotal"] == 2
    usage_error(CliRunner().invoke(app, [*args, "--on-bad-record", "ignore"]), "'ignore' is not one of 'fail', 'skip'")


def test_the_real_command_prints_one_line_for_a_garbage_onnx_model(built):
    """End to end in a fresh process, as the entry point runs (the 101-line traceback of the issue)."""
    (built.model / "model.onnx").write_bytes(b"garbage")
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-c", "from search.cli import app; app()", "search", "--index-dir", str(built.onnx)]
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([*command, "vitamin"], capture_output=True, text=True, env=env, timeout=120, cwd=root)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, lines
    assert lines[-1].startswith(f"error: {built.model / 'model.onnx'}"), lines
    assert sum(line.startswith("error:") for line in lines) == 1
