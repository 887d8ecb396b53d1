"""Named datasets: the manifest (`datasets.json`, package data), where a named dataset is looked up, and its download.

A name is looked up, in order, in `$SEMSEARCH_DATA`, `../shared/datasets` and `data/` seen from the current folder,
and the same two places seen from the source checkout when the package runs from one (an editable install); an
installed package relies on the first three only. Missing everywhere, the public BEIR zip named in the manifest is
fetched with pooch (its sha256 checked when the manifest pins one), unpacked, checked and moved into place whole.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pooch

from search.data.beir import load_beir
from search.data.records import DatasetError
from semsearch_common.atomic import staged_folder

logger = logging.getLogger(__name__)

DATA_ENV = "SEMSEARCH_DATA"
MANIFEST_NAME = "datasets.json"  # package data of search.data, read with importlib.resources
SHARED_DATASETS = Path("shared") / "datasets"  # seen from the parent of the project root: ../shared/datasets


def load_manifest() -> dict[str, dict[str, Any]]:
    """The named datasets: public URL, archive sha256, expected record counts, per-file sha256, reference scores."""
    return json.loads(resources.files("search.data").joinpath(MANIFEST_NAME).read_text(encoding="utf-8"))


def source_checkout() -> Path | None:
    """The project checkout this package is imported from (the folder above `search/` holding pyproject.toml),
    or None for an installed package, whose files live in site-packages."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def dataset_search_path() -> list[Path]:
    """Where named datasets are looked for, in order, without duplicates:
    $SEMSEARCH_DATA, ../shared/datasets (from the current folder, then the checkout), data/ (likewise)."""
    checkout = source_checkout()
    places = [Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []
    places.append(Path.cwd().parent / SHARED_DATASETS)
    if checkout is not None:
        places.append(checkout.parent / SHARED_DATASETS)
    places.append(Path.cwd() / "data")
    if checkout is not None:
        places.append(checkout / "data")
    unique: list[Path] = []
    for place in places:
        if place.resolve() not in [p.resolve() for p in unique]:
            unique.append(place)
    return unique


def download_root() -> Path:
    """Where a download goes: $SEMSEARCH_DATA, else the checkout's data/, else data/ in the current folder."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    checkout = source_checkout()
    return (checkout if checkout is not None else Path.cwd()) / "data"


def locate_named_dataset(name: str, entry: Mapping[str, Any], download: bool = True) -> Path:
    """The folder of the named dataset: found on the search path, else downloaded (when `download`)."""
    places = dataset_search_path()
    for place in places:
        if (place / name / "corpus.jsonl").exists():
            return place / name
    hint = (
        f"dataset {name!r} not found in {', '.join(str(p) for p in places)}. Put the BEIR folder "
        f"({name}/corpus.jsonl, queries.jsonl, qrels/) in one of them, or set {DATA_ENV}; "
        f"it is published at {entry['url']}"
    )
    if not download:
        raise DatasetError(hint)
    try:
        return download_beir(name, entry, download_root())
    except (OSError, zipfile.BadZipFile, DatasetError) as err:  # network errors (requests') are OSErrors
        raise DatasetError(f"{hint} (download failed: {err})") from err


def download_beir(name: str, entry: Mapping[str, Any], target_root: Path) -> Path:
    """Fetch and unpack a public BEIR zip beside `target_root / name`, check it loads with the manifest's record
    counts, and only then move it into place whole: a failed download leaves nothing behind."""
    archive_sha256 = entry.get("archive_sha256")
    target_root.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s", name, entry["url"])
    with tempfile.TemporaryDirectory(dir=target_root, prefix=".download-") as tmp:
        try:
            pooch.retrieve(
                entry["url"],
                known_hash=f"sha256:{archive_sha256}" if archive_sha256 else None,
                fname=f"{name}.zip",
                path=tmp,
                processor=pooch.Unzip(extract_dir="unpacked"),
                progressbar=False,
            )
        except ValueError as err:  # pooch: the archive's hash is not the manifest's
            raise DatasetError(f"{entry['url']}: {err}") from err
        folder = Path(tmp) / "unpacked" / entry.get("archive_folder", name)
        dataset = load_beir(folder, name)
        expected = entry.get("counts", {}).get("corpus")
        if expected is not None and len(dataset.corpus) != expected:
            raise DatasetError(f"downloaded {name} has {len(dataset.corpus)} documents, expected {expected}")
        target = target_root / name
        with staged_folder(target) as staging:
            for item in folder.iterdir():
                os.replace(item, staging / item.name)
    return target
