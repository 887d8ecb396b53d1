from pathlib import Path

import pytest

from search.data import registry
from search.data.datasets import DatasetError, load_dataset

PROJECT_ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SCIFACT = PROJECT_ROOT.parent / "shared" / "datasets" / "scifact"


def test_a_beir_folder_a_corpus_file_and_a_text_folder_by_path(beir_dir, tmp_path):
    ds = load_dataset(str(beir_dir))
    assert ds.name == "tiny"
    assert len(ds.corpus) == 60
    assert set(ds.qrels) == {"test", "train"}
    corpus_file = beir_dir / "corpus.jsonl"
    plain = load_dataset(str(corpus_file))
    assert plain.name == "corpus"
    assert plain.path == corpus_file
    assert plain.corpus == ds.corpus
    assert plain.queries == {}
    assert plain.qrels == {}
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("apple")
    assert [d.id for d in load_dataset(str(tmp_path / "txt")).corpus] == ["a"]


def test_named_dataset_from_the_env_folder(tmp_path, monkeypatch, beir_dir):
    root = tmp_path / "data_root"
    root.mkdir()
    beir_dir.rename(root / "scifact")
    monkeypatch.setenv(registry.DATA_ENV, str(root))
    ds = load_dataset("scifact")
    assert ds.path == root / "scifact"
    assert ds.name == "scifact"
    assert len(ds.corpus) == 60


def test_unknown_dataset_lists_options():
    with pytest.raises(DatasetError, match="unknown dataset 'nope': use one of scifact, a BEIR folder"):
        load_dataset("nope")


@pytest.mark.skipif(not SCIFACT.exists(), reason=f"needs {SCIFACT}")
def test_real_scifact_from_the_project_root(monkeypatch):
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    monkeypatch.chdir(PROJECT_ROOT)
    ds = load_dataset("scifact", download=False)
    assert ds.path is not None
    assert ds.path.resolve() == SCIFACT.resolve()
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 1109
    assert len(ds.qrels["test"]) == 300
    assert sum(map(len, ds.qrels["test"].values())) == 339
    assert len(ds.qrels["train"]) == 809
    assert sum(map(len, ds.qrels["train"].values())) == 919
