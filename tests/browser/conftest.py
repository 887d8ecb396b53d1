"""Fixtures of the browser tests: fake-encoder pipelines served on loopback by the real app, and headless Chromium.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`; `.ci/run` installs them).
Without them these tests are skipped with the command to run, unless `SEMSEARCH_REQUIRE_BROWSER=1` (set by
`.ci/run`), which turns the skip into a failure so CI can never pass without running them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import build_index_dir
from search.serve.app import create_app
from search.serve.config import ServerConfig
from search.sources import PipelineSource

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_CANDIDATES = ("chromedriver", "chromium-driver")
REQUIRE_ENV = "SEMSEARCH_REQUIRE_BROWSER"
INSTALL_HINT = "apt-get install chromium chromium-driver (and pip install selenium: the dev extra)"

# Documents whose title and text are HTML that would run script if the page inserted them as HTML.
XSS_TITLE = '<img src="x" onerror="window.__xss = (window.__xss || 0) + 1">attack title'
XSS_TEXT = "zebrafish <script>window.__xss = (window.__xss || 0) + 1</script> <b>bold</b> &amp; entity zebrafish"
XSS_QUERY = "zebrafish"

TOPICS = {
    "vitamin": "vitamin d deficiency bone density calcium supplements fracture",
    "cancer": "tumor cells cancer chemotherapy metastasis oncology",
    "heart": "cardiac heart failure blood pressure artery",
    "brain": "neurons brain cortex memory synapse",
}


def find_binary(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def write_corpus(root: Path) -> Path:
    """A BEIR folder: topic documents answerable by word overlap, two with HTML in them, one without a title."""
    root.mkdir(parents=True, exist_ok=True)
    docs: list[dict[str, str]] = []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for i in range(10):
            text = " ".join(vocab[(i + j) % len(vocab)] for j in range(5)) + f" finding {i} of the {topic} study"
            docs.append({"_id": f"{topic}-{i}", "title": f"{topic.title()} study {i}", "text": text})
    docs.append({"_id": "xss-1", "title": XSS_TITLE, "text": XSS_TEXT})
    docs.append({"_id": "xss-2", "title": "", "text": XSS_TEXT.replace("<b>", '<a href="javascript:alert(1)">')})
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    queries = [{"_id": f"q-{topic}", "text": words.split()[0]} for topic, words in TOPICS.items()]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"q-{topic}\t{topic}-0\t1" for topic in TOPICS]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def bench_row(
    encoder: str, index: str, params: dict[str, Any], recall: float, ms: float, **extra: Any
) -> dict[str, Any]:
    return {
        "encoder": encoder,
        "encoder_spec": f"/root/.cache/semsearch/students/{encoder}-onnx/int8-dynamic",  # a server path
        "doc_encoder": "teacher",
        "precision": "int8" if "int8" in encoder else "fp32",
        "index": index,
        "params": params,
        "recall@10_vs_teacher": recall,
        "ndcg@10": 0.5 + recall / 10,
        "total_ms_p50": ms,
        "encode_ms_p50": ms * 0.9,
        "search_ms_p50": ms * 0.1,
        "bytes_per_vector": 3072.0 if index == "Flat" else 96.0,
        "pareto": False,
        **extra,
    }


BENCH_ROWS = [
    bench_row("teacher", "Flat", {}, 1.0, 70.0, pareto=True),
    bench_row("teacher", "HNSW32", {"efSearch": 16}, 0.97, 69.0, pareto=True),
    bench_row("teacher", "PQ96", {}, 0.80, 71.0),
    bench_row("student-int8", "Flat", {}, 0.66, 2.7, pareto=True),
    bench_row("student-int8", "HNSW32", {"efSearch": 32}, 0.64, 2.5, pareto=True),
    bench_row("student-int8", "PQ96", {}, 0.55, 2.6),
    bench_row("minilm-int8", "Flat", {}, 0.52, 2.9),
    bench_row("minilm-int8", "HNSW32", {"efSearch": 16}, 0.50, 2.8),
]
BUDGET_PICK = 4  # the row summary.json names as the budget's best


def write_bench(root: Path) -> Path:
    """A small `semsearch bench --out` folder: results.json and summary.json with a budget pick."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(BENCH_ROWS), encoding="utf-8")
    best = BENCH_ROWS[BUDGET_PICK]
    summary = {
        "dataset": "tiny",
        "split": "test",
        "queries": 4,
        "configurations": len(BENCH_ROWS),
        "budget": {"best": best, "budget_ms": 5.0, "message": "best under total_ms_p50 <= 5.0 ms: student-int8"},
        "machine": {"cpu": "test cpu", "cores": 2, "threads": 2},
    }
    (root / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running server: its base URL and what it serves."""

    url: str
    corpus: Path
    bench: Path
    index_dirs: dict[str, Path]


def serve_in_thread(config: ServerConfig) -> Iterator[str]:
    """Run the real app under uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, preload=True), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="package")
def package_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the package: the served pipelines' corpus vectors must stay cached while tests run (the
    evaluation refuses to re-encode a corpus), and the function-scoped `isolated_cache` would move it under them."""
    cache = tmp_path_factory.mktemp("browser-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEMSEARCH_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def isolated_cache(package_cache: Path) -> Path:
    """Overrides the suite's per-test cache (see `package_cache`)."""
    return package_cache


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory, package_cache: Path) -> Iterator[Served]:
    """Teacher (fake 128 d, Flat) and compressed (fake 16 d: a noisier projection of the same hashing, Flat)
    pipelines and a bench folder, served."""
    root = tmp_path_factory.mktemp("served")
    corpus = write_corpus(root / "corpus")
    dataset = load_beir(corpus)
    dirs = {"teacher": root / "teacher", "compressed": root / "compressed"}
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), dirs["teacher"], show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=16), IndexSpec("Flat"), dirs["compressed"], show_progress=False)
    bench = write_bench(root / "bench")
    config = ServerConfig(
        pipelines=tuple(PipelineSource(name, path) for name, path in dirs.items()),
        bench_dir=bench,
        evaluation_dataset=str(corpus),
        threads=1,
    )
    for url in serve_in_thread(config):
        yield Served(url=url, corpus=corpus, bench=bench, index_dirs=dirs)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Chromium through selenium (console messages kept), or a skip naming what to install."""
    chromium, driver_path = find_binary(CHROMIUM_CANDIDATES), find_binary(DRIVER_CANDIDATES)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if chromium is None or driver_path is None or webdriver is None:
        message = f"headless Chromium is not available: {INSTALL_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--lang=en-US", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, served: Served, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """`page(path)` opens `path` of the served app at 1400 x 1000 and returns the driver; screenshots of each test
    go to its temporary folder (`shot(name)` on the driver's `semsearch_shot` attribute)."""
    browser.set_window_size(1400, 1000)
    browser.get_log("browser")  # drop messages of earlier tests

    def open_page(path: str) -> Any:
        browser.get(served.url + path)
        return browser

    def shot(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        browser.save_screenshot(str(path))
        return path

    browser.semsearch_shot = shot
    yield open_page
