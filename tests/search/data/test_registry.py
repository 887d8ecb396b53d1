"""Named datasets: where they are looked up (as an installed package would, with no source checkout), and the pooch
download, run offline against a zip built here."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import zipfile
from pathlib import Path

import pooch
import pytest
import requests

from search.data import registry
from search.data.beir import load_beir
from search.data.records import DatasetError
from search.data.registry import dataset_search_path, download_beir, download_root, locate_named_dataset

URL = "https://example.invalid/datasets/tiny.zip"


def project_root() -> Path:
    return next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """Run as a non-editable install would: no source checkout, no $SEMSEARCH_DATA, cwd = tmp_path/work/project."""
    monkeypatch.setattr(registry, "source_checkout", lambda: None)
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    return project


def test_manifest_is_package_data_with_an_archive_hash():
    entry = registry.load_manifest()["scifact"]
    assert entry["url"].endswith("/scifact.zip")
    assert entry["counts"]["corpus"] == 5183
    assert re.fullmatch("[0-9a-f]{64}", entry["archive_sha256"])


def test_source_checkout_is_the_project_root_here_and_none_when_installed(tmp_path):
    assert registry.source_checkout() == project_root()
    site = tmp_path / "site-packages" / "search" / "data"
    site.mkdir(parents=True)
    shutil.copyfile(registry.__file__, site / "registry.py")
    spec = importlib.util.spec_from_file_location("installed_registry", site / "registry.py")
    assert spec is not None
    assert spec.loader is not None
    installed_copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed_copy)
    assert installed_copy.source_checkout() is None


def test_installed_lookup_from_the_project_root_a_sibling_and_the_env(installed, write_beir, monkeypatch):
    shared = installed.parent / "shared" / "datasets"
    write_beir(shared / "scifact")
    assert locate_named_dataset("scifact", {"url": URL}, download=False) == shared / "scifact"
    sibling = installed.parent / "elsewhere"
    sibling.mkdir()
    monkeypatch.chdir(sibling)  # a folder beside the project sees the same ../shared
    assert locate_named_dataset("scifact", {"url": URL}, download=False) == shared / "scifact"
    env_root = installed.parent / "env-data"
    write_beir(env_root / "scifact", seed=3)
    monkeypatch.setenv(registry.DATA_ENV, str(env_root))  # $SEMSEARCH_DATA comes first
    assert locate_named_dataset("scifact", {"url": URL}, download=False) == env_root / "scifact"


def test_installed_lookup_in_the_current_folders_data(installed, write_beir):
    write_beir(installed / "data" / "scifact")
    assert dataset_search_path() == [installed.parent / "shared" / "datasets", installed / "data"]
    assert locate_named_dataset("scifact", {"url": URL}, download=False) == installed / "data" / "scifact"
    assert download_root() == installed / "data"


def test_checkout_places_come_after_the_current_folders(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    monkeypatch.setattr(registry, "source_checkout", lambda: checkout)
    monkeypatch.setenv(registry.DATA_ENV, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    assert dataset_search_path() == [
        tmp_path / "env",
        tmp_path.parent / "shared" / "datasets",
        tmp_path / "shared" / "datasets",
        tmp_path / "data",
        checkout / "data",
    ]
    assert download_root() == tmp_path / "env"
    monkeypatch.delenv(registry.DATA_ENV)
    assert download_root() == checkout / "data"


@pytest.fixture
def tiny_zip(tmp_path, write_beir) -> tuple[Path, str]:
    """A BEIR zip holding folder tiny/ (60 documents), and its sha256."""
    source = write_beir(tmp_path / "zip-source" / "tiny")
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(source.rglob("*")):
            if file.is_file():
                zipped.write(file, file.relative_to(source.parent).as_posix())
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.fixture
def served(monkeypatch, tiny_zip) -> list[str]:
    """pooch's HTTP downloader answers from the local zip; returns the URLs it was asked for."""
    asked: list[str] = []

    def from_disk(self, url, output_file, pooch_obj, check_only=False):
        asked.append(url)
        shutil.copyfile(tiny_zip[0], output_file)

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", from_disk)
    return asked


def entry_for(sha256: str | None, corpus: int = 60) -> dict:
    entry = {"url": URL, "archive_folder": "tiny", "counts": {"corpus": corpus}}
    return {**entry, "archive_sha256": sha256} if sha256 else entry


def test_download_checks_the_hash_unpacks_and_publishes_whole(tmp_path, tiny_zip, served):
    root = tmp_path / "root"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "partial.tmp").write_text("left by an interrupted copy")
    target = download_beir("tiny", entry_for(tiny_zip[1]), root)
    assert target == root / "tiny"
    assert served == [URL]
    assert sorted(p.name for p in target.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]
    expected = load_beir(tmp_path / "zip-source" / "tiny")
    got = load_beir(target)
    assert got.corpus == expected.corpus
    assert got.queries == expected.queries
    assert got.qrels == expected.qrels
    assert [p.name for p in root.iterdir()] == ["tiny"]  # no download leftovers


def test_download_without_a_pinned_hash_still_works(tmp_path, served):
    assert len(load_beir(download_beir("tiny", entry_for(None), tmp_path / "root")).corpus) == 60


@pytest.mark.parametrize(
    "entry,message",
    [
        (entry_for("0" * 64), "SHA256 hash of downloaded file .* does not match the known hash"),
        (entry_for(None, corpus=61), "downloaded tiny has 60 documents, expected 61"),
    ],
)
def test_a_bad_download_leaves_nothing_behind(tmp_path, served, entry, message):
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match=message):
        download_beir("tiny", entry, root)
    assert list(root.iterdir()) == []


def test_missing_named_dataset_is_downloaded_once_into_the_env_folder(installed, tiny_zip, served, monkeypatch):
    data = installed.parent / "data-env"
    monkeypatch.setenv(registry.DATA_ENV, str(data))
    assert locate_named_dataset("tiny", entry_for(tiny_zip[1])) == data / "tiny"
    assert locate_named_dataset("tiny", entry_for(tiny_zip[1])) == data / "tiny"
    assert served == [URL]  # the second call found it


def test_offline_download_says_where_to_put_the_folder(installed, monkeypatch):
    def offline(self, url, output_file, pooch_obj, check_only=False):
        raise requests.ConnectionError("no network")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", offline)
    entry = registry.load_manifest()["scifact"]
    with pytest.raises(
        DatasetError, match=r"dataset 'scifact' not found in .*shared/datasets.*SEMSEARCH_DATA.*scifact.zip"
    ):
        locate_named_dataset("scifact", entry, download=False)
    with pytest.raises(DatasetError, match=r"not found in .*scifact.zip \(download failed: no network\)"):
        locate_named_dataset("scifact", entry)
    assert not (installed / "data" / "scifact").exists()
