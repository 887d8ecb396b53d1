"""Screenshots of the real web page: `semsearch serve` on real index folders, driven by headless Chromium.

    PYTHONPATH=benchmarks/web:benchmarks/reliability python -m web_screenshots --out docs/screenshots \
        --bench-dir benchmarks/web/bench \
        --pipeline teacher=runs/scifact/teacher --pipeline compressed=runs/scifact/compressed

(from the repository root). Starts the server with the reliability harness's `reliability_harness.server` (this
source tree, loopback, every pipeline preloaded, the evaluation started at once), waits for the evaluation,
then saves: the search page for each query (wide and narrow windows), the /bench map with the budget pick's tooltip,
and `screenshots.json` (what was shown: queries, the /compare answers, pipelines, browser). Needs Debian's
`chromium` and `chromium-driver` and `selenium`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from reliability_harness.server import ServerProcess, ServerSpec, parse_pipelines

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # the source tree the server runs from
# Written for the screenshots (not SciFact queries): what a person might type.
DEFAULT_QUERIES = (
    "vitamin D deficiency and the risk of bone fractures",
    "does exercise improve memory in older adults",
)
WIDE = (1500, 1000)
NARROW = (420, 900)
METRICS_WAIT_S = 900.0
SETTLE_S = 2.0
MAX_SHOT_HEIGHT = 6000


@dataclass(frozen=True)
class ShotSpec:
    out: Path
    pipelines: tuple[tuple[str, Path], ...]
    bench_dir: Path | None
    queries: tuple[str, ...] = DEFAULT_QUERIES
    k: int = 10
    port: int = 0  # 0: a free one


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise ImportError("screenshots need selenium: pip install -e '.[dev]'") from err
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise RuntimeError(
            "screenshots need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                     "--force-device-scale-factor=1", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def wait_until(condition: Any, timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def full_page(driver: Any, path: Path, width: int) -> None:
    """Save the whole page at `width`: the window grown until its viewport holds the document's height."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    frame = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(width, min(height + frame, MAX_SHOT_HEIGHT))
    time.sleep(0.3)
    driver.save_screenshot(str(path))


SHOWN_SCRIPT = """
return [...document.querySelectorAll('#columns .column')].map((column) => ({
  pipeline: column.dataset.pipeline,
  recall: column.querySelector('.recall-value').textContent,
  speedup: column.querySelector('.speedup').textContent,
  ms: Object.fromEntries([...column.querySelectorAll('.stage')].map((s) => [s.dataset.stage, Number(s.dataset.ms)])),
  hits: [...column.querySelectorAll('.hit')].map((hit) => hit.dataset.id),
}));
"""


def shown(driver: Any) -> list[dict[str, Any]]:
    """What the page shows per column (recall, speed-up, stage ms, hit ids), read from the DOM of the screenshot."""
    return driver.execute_script(SHOWN_SCRIPT)


def take_screenshots(spec: ShotSpec) -> dict[str, Any]:
    """Serve, shoot, describe; returns what `screenshots.json` holds."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def is_stale(element: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        return False

    spec.out.mkdir(parents=True, exist_ok=True)
    port = spec.port or free_port()
    extra = ("--evaluate-on-startup", *(("--bench-dir", str(spec.bench_dir)) if spec.bench_dir else ()))
    server_spec = ServerSpec(src=ROOT, pipelines=spec.pipelines, port=port, extra_args=extra)
    record: dict[str, Any] = {"pipelines": {name: str(path) for name, path in spec.pipelines}, "shots": []}
    with ServerProcess(server_spec):
        base = server_spec.base_url
        evaluated = f"{base}/evaluation"
        wait_until(lambda: httpx.get(evaluated, timeout=10).status_code == 200, METRICS_WAIT_S, "/evaluation")
        driver = start_browser()
        try:
            record["browser"] = driver.capabilities.get("browserVersion")
            for number, query in enumerate(spec.queries, start=1):
                for label, (width, height) in (("wide", WIDE), ("narrow", NARROW)):
                    driver.set_window_size(width, height)
                    driver.get(f"{base}/?{httpx.QueryParams({'q': query, 'k': spec.k})}")
                    first = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#columns .column"), 60, "columns")
                    # Search again, once the browser is idle, and show that answer: the first one after a page load
                    # competes with the browser for the cores (its bars would show the browser's work too).
                    time.sleep(SETTLE_S)  # let the browser finish drawing the first answer
                    driver.find_element(By.ID, "query").send_keys(Keys.ENTER)
                    wait_until(lambda old=first[0]: is_stale(old), 60, "the second answer")
                    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#columns .column"), 60, "columns")
                    time.sleep(0.5)
                    path = spec.out / f"search-{number}-{label}.png"
                    if label == "wide":
                        full_page(driver, path, width)
                    else:
                        driver.save_screenshot(str(path))
                    record["shots"].append(
                        {"file": path.name, "query": query, "window": [width, height], "shown": shown(driver)}
                    )
            if spec.bench_dir:
                driver.set_window_size(*WIDE)
                driver.get(f"{base}/bench")
                wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#frontier .point"), 60, "the map")
                wait_until(lambda: driver.find_element(By.ID, "metrics-table").is_displayed(), 60, "the metrics table")
                full_page(driver, spec.out / "bench.png", WIDE[0])
                record["shots"].append({"file": "bench.png", "window": list(WIDE)})
                driver.set_window_size(*WIDE)
                pick = driver.find_elements(By.CSS_SELECTOR, "#frontier .point.budget-pick circle")
                if pick:
                    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", pick[0])
                    ActionChains(driver).move_to_element(pick[0]).perform()
                    time.sleep(0.3)
                    driver.save_screenshot(str(spec.out / "bench-tooltip.png"))
                    record["shots"].append({"file": "bench-tooltip.png", "window": list(WIDE)})
        finally:
            driver.quit()
    (spec.out / "screenshots.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m web_screenshots", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--pipeline", action="append", required=True, help="NAME=DIR, repeatable (reference first)")
    parser.add_argument("--bench-dir", type=Path, default=None, help="a `semsearch bench --out` folder")
    parser.add_argument("--query", action="append", default=None, help="repeatable (default: two written queries)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        pipelines = parse_pipelines(args.pipeline)
    except ValueError as err:
        parser.error(str(err))
    spec = ShotSpec(
        out=args.out,
        pipelines=pipelines,
        bench_dir=args.bench_dir,
        queries=tuple(args.query) if args.query else DEFAULT_QUERIES,
        k=args.k,
    )
    record = take_screenshots(spec)
    for shot in record["shots"]:
        print(spec.out / shot["file"])


if __name__ == "__main__":
    main()
