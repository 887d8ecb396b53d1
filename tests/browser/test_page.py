"""The web page in real headless Chromium against the real app on loopback (fake-encoder pipelines).

Assertions are on the DOM and on what the JSON API answers to the same request (computed independently, through
/search of each pipeline), never on pixels; each test saves a screenshot in its temporary folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import BENCH_ROWS, BUDGET_PICK, XSS_QUERY, XSS_TEXT, XSS_TITLE, Served

pytest.importorskip("selenium")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 15
STAGES = ["tokenize", "encode", "search", "rescore", "total"]


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT_S).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; console: {driver.get_log('browser')}")


NONE_RUN = "/evaluation - Failed to load resource: the server responded with a status of 404"  # the page shows it


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """Severe console messages but the browser's own note of GET /evaluation's 404 (no evaluation has run yet)."""
    return [
        entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE" and NONE_RUN not in entry["message"]
    ]


def top_ids(served: Served, pipeline: str, query: str, k: int) -> list[str]:
    """The pipeline's own top-k through POST /search: the independent answer the page's columns must show."""
    answer = httpx.post(f"{served.url}/search", json={"query": query, "k": k, "pipeline": pipeline})
    answer.raise_for_status()
    return [hit["id"] for hit in answer.json()["hits"]]


def search(driver: Any, query: str, k: int | None = None) -> None:
    """Type the query (and k) and press Enter, then wait for the columns of this query."""
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=pipeline]"), "the pipeline list")
    box = driver.find_element(By.ID, "query")
    box.clear()
    if k is not None:
        k_box = driver.find_element(By.ID, "k")
        k_box.clear()
        k_box.send_keys(str(k))
    box.send_keys(query, Keys.ENTER)


def columns_for(driver: Any, query: str) -> dict[str, Any]:
    wait_for(driver, lambda d: query in d.find_element(By.ID, "status").text, f"the results of {query!r}")
    return {
        col.get_attribute("data-pipeline"): col for col in driver.find_elements(By.CSS_SELECTOR, "#columns .column")
    }


def hit_ids(column: Any, selector: str = ".hit") -> list[str]:
    return [item.get_attribute("data-id") for item in column.find_elements(By.CSS_SELECTOR, selector)]


def test_page_loads_without_console_errors(page: Callable[[str], Any]) -> None:
    driver = page("/")
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "input[name=pipeline]")) == 2, "two pipelines")
    labels = [label.text for label in driver.find_elements(By.CSS_SELECTOR, ".pipeline-option")]
    assert labels[0].startswith("teacher")
    assert "REFERENCE" in labels[0].upper()
    assert labels[1] == "compressed"
    assert driver.switch_to.active_element.get_attribute("id") == "query"  # ready to type
    driver.semsearch_shot("loaded")
    assert console_errors(driver) == []


def test_query_shows_both_columns_shared_hits_latency_and_recall(page: Callable[[str], Any], served: Served) -> None:
    driver = page("/")
    query, k = "cancer tumor", 10  # 7 of 10 shared, with wide score gaps at rank 10
    search(driver, query, k)
    columns = columns_for(driver, query)
    assert list(columns) == ["teacher", "compressed"]  # the reference first
    teacher_ids, compressed_ids = top_ids(served, "teacher", query, k), top_ids(served, "compressed", query, k)
    assert hit_ids(columns["teacher"]) == teacher_ids
    assert hit_ids(columns["compressed"]) == compressed_ids
    about = {name: column.find_element(By.CSS_SELECTOR, ".about").text for name, column in columns.items()}
    assert "Flat · 512 B/vector" in about["teacher"] and "Flat · 64 B/vector" in about["compressed"]  # 4 x dim
    shared = [doc for doc in compressed_ids if doc in teacher_ids]
    assert 0 < len(shared) < k, "the fixture should give a partial overlap"

    # Shared hits are marked with the teacher's rank, in the same colour as in the teacher's column.
    assert hit_ids(columns["compressed"], ".hit.shared") == shared
    assert hit_ids(columns["compressed"], ".hit.extra") == [doc for doc in compressed_ids if doc not in teacher_ids]
    teacher_marks = {
        item.get_attribute("data-id"): item.find_element(By.CSS_SELECTOR, ".marker")
        for item in columns["teacher"].find_elements(By.CSS_SELECTOR, ".hit")
    }
    for item in columns["compressed"].find_elements(By.CSS_SELECTOR, ".hit.shared"):
        doc = item.get_attribute("data-id")
        mark = item.find_element(By.CSS_SELECTOR, ".marker")
        assert mark.text == str(teacher_ids.index(doc) + 1)
        assert mark.value_of_css_property("background-color") == teacher_marks[doc].value_of_css_property(
            "background-color"
        )
    for item in columns["compressed"].find_elements(By.CSS_SELECTOR, ".hit.extra"):
        assert item.find_element(By.CSS_SELECTOR, ".marker").text == "+"
    # What the compressed pipeline missed is listed under it, and flagged in the teacher's column.
    missed = [doc for doc in teacher_ids if doc not in compressed_ids]
    assert hit_ids(columns["compressed"], ".missed-item") == missed
    assert hit_ids(columns["teacher"], ".hit.missed-elsewhere") == missed
    # ... and what the teacher missed (the compressed pipeline's "+" hits) under the teacher's column.
    extra = [doc for doc in compressed_ids if doc not in teacher_ids]
    assert hit_ids(columns["teacher"], ".not-found[data-by=compressed] .missed-item") == extra

    # Recall@k vs the teacher per column, and the latency bars with the speed-up.
    recall = columns["compressed"].find_element(By.CSS_SELECTOR, ".recall-value").text
    assert recall == f"{len(shared) / k:.2f}"
    assert columns["teacher"].find_element(By.CSS_SELECTOR, ".recall-value").text == "1.00"
    for column in columns.values():
        stages = column.find_elements(By.CSS_SELECTOR, ".latency .stage")
        assert [stage.get_attribute("data-stage") for stage in stages] == STAGES
        total = float(stages[-1].get_attribute("data-ms"))
        parts = sum(float(stage.get_attribute("data-ms")) for stage in stages[:-1])
        assert total > 0
        assert parts <= total * 1.05 + 0.05  # stages fit in the total
        assert stages[-1].find_element(By.CSS_SELECTOR, ".bar").size["width"] > 0
    assert "than teacher" in columns["compressed"].find_element(By.CSS_SELECTOR, ".speedup").text
    driver.semsearch_shot("compare")
    assert console_errors(driver) == []


def test_hovering_a_hit_highlights_it_in_every_column(page: Callable[[str], Any]) -> None:
    driver = page("/")
    query = "cancer tumor"
    search(driver, query, 10)
    columns = columns_for(driver, query)
    item = columns["compressed"].find_element(By.CSS_SELECTOR, ".hit.shared")
    doc = item.get_attribute("data-id")
    ActionChains(driver).move_to_element(item).perform()
    lit = {el.get_attribute("data-id") for el in driver.find_elements(By.CSS_SELECTOR, "#columns .highlight")}
    assert lit == {doc}
    assert len(driver.find_elements(By.CSS_SELECTOR, "#columns .hit.highlight")) == 2


def test_blank_query_shows_the_apis_message(page: Callable[[str], Any], served: Served) -> None:
    expected = httpx.post(f"{served.url}/compare", json={"query": "   ", "k": 10}).json()["detail"][0]["msg"]
    driver = page("/")
    search(driver, "   ")
    error = driver.find_element(By.ID, "error")
    wait_for(driver, lambda d: error.is_displayed(), "the error message")
    assert "422" in error.text
    assert expected in error.text
    assert driver.find_elements(By.CSS_SELECTOR, "#columns .column") == []
    driver.semsearch_shot("blank")
    # k over the server's limit: the API's own message (naming k) is shown too.
    search(driver, "vitamin", 5000)
    wait_for(driver, lambda d: "k:" in error.text and "1000" in error.text, "the k message")


def test_xss_document_renders_as_text(page: Callable[[str], Any]) -> None:
    driver = page("/")
    search(driver, XSS_QUERY, 5)
    columns = columns_for(driver, XSS_QUERY)
    teacher = columns["teacher"]
    items = {item.get_attribute("data-id"): item for item in teacher.find_elements(By.CSS_SELECTOR, ".hit")}
    assert {"xss-1", "xss-2"} <= set(items)
    title = items["xss-1"].find_element(By.CSS_SELECTOR, ".title")
    assert title.get_attribute("textContent") == XSS_TITLE  # shown as the text it is
    assert items["xss-1"].find_element(By.CSS_SELECTOR, ".snippet").get_attribute("textContent") == XSS_TEXT
    assert items["xss-2"].find_element(By.CSS_SELECTOR, ".title").text == "xss-2"  # no title: its id
    for tag in ("img", "script", "b", "a"):
        assert driver.find_elements(By.CSS_SELECTOR, f"#columns {tag}") == [], f"a <{tag}> was created"
    assert driver.execute_script("return window.__xss === undefined")
    driver.semsearch_shot("xss")


def test_choosing_pipelines_and_keyboard(page: Callable[[str], Any]) -> None:
    driver = page("/")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=pipeline]"), "the pipeline list")
    driver.find_element(By.TAG_NAME, "body").click()
    ActionChains(driver).send_keys("/").perform()  # "/" jumps to the query box
    assert driver.switch_to.active_element.get_attribute("id") == "query"
    driver.find_element(By.ID, "pipeline-compressed").click()  # untick: only the reference answers
    search(driver, "cancer tumor")
    columns = columns_for(driver, "cancer tumor")
    assert list(columns) == ["teacher"]
    assert "q=cancer+tumor" in driver.current_url  # the query is in the address, to share or reload


def test_narrow_window_stacks_columns(page: Callable[[str], Any], browser: Any) -> None:
    browser.set_window_size(420, 900)
    driver = page("/?q=heart+artery&k=5")
    columns = list(columns_for(driver, "heart artery").values())
    assert len(columns) == 2
    first, second = columns[0].rect, columns[1].rect
    assert second["y"] >= first["y"] + first["height"] - 1  # one under the other
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    driver.semsearch_shot("narrow")


def test_bench_view_draws_the_frontier(page: Callable[[str], Any]) -> None:
    driver = page("/bench")
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#frontier .point")) == len(BENCH_ROWS), "points")
    pareto = [row for row in BENCH_ROWS if row["pareto"]]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#frontier .point.pareto")) == len(pareto)
    picks = driver.find_elements(By.CSS_SELECTOR, "#frontier .point.budget-pick")
    assert len(picks) == 1
    best = BENCH_ROWS[BUDGET_PICK]
    assert (picks[0].get_attribute("data-encoder"), picks[0].get_attribute("data-index")) == (
        best["encoder"],
        best["index"],
    )
    assert len(picks[0].find_elements(By.CSS_SELECTOR, ".budget-star")) == 1
    assert driver.find_element(By.CSS_SELECTOR, "#frontier .frontier-line").get_attribute("points").count(",") == (
        2 * len(pareto) - 1
    )  # a step line through the frontier points
    rows = driver.find_elements(By.CSS_SELECTOR, "#pareto-table tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[0].text.split(" ")[0] for row in rows] == [
        row["encoder"] for row in sorted(pareto, key=lambda row: row["total_ms_p50"])
    ]
    assert "Budget pick" in driver.find_element(By.ID, "budget").text

    # Hovering a point shows what it is.
    ActionChains(driver).move_to_element(picks[0].find_element(By.TAG_NAME, "circle")).perform()
    tooltip = driver.find_element(By.ID, "tooltip")
    wait_for(driver, lambda d: tooltip.is_displayed(), "the tooltip")
    for text in (best["encoder"], best["index"], "efSearch=32", f"{best['ndcg@10']:.4f}", "96.0", "the budget pick"):
        assert text in tooltip.text
    assert "/root/.cache" not in driver.page_source  # the bench rows' server paths are not shown
    driver.semsearch_shot("bench")
    assert console_errors(driver) == []


def test_bench_view_starts_the_evaluation_and_shows_its_summary(page: Callable[[str], Any], served: Served) -> None:
    assert httpx.get(f"{served.url}/evaluation").status_code == 404  # loading pages started nothing
    driver = page("/bench")
    button = driver.find_element(By.ID, "evaluation-run")
    wait_for(driver, lambda d: button.is_displayed(), "the button that starts the evaluation")
    assert "no evaluation has run" in driver.find_element(By.ID, "metrics-status").text
    button.click()
    table = driver.find_element(By.ID, "metrics-table")
    wait_for(driver, lambda d: table.is_displayed(), "the /evaluation table")
    assert not button.is_displayed()
    summary = httpx.get(f"{served.url}/evaluation").json()
    headers = [cell.text for cell in table.find_elements(By.CSS_SELECTOR, "thead th")][1:]
    assert headers == ["teacher (reference)", "compressed"]
    ndcg = table.find_element(By.CSS_SELECTOR, "tr[data-metric='ndcg@10']")
    cells = [cell.text for cell in ndcg.find_elements(By.TAG_NAME, "td")]
    assert cells == [f"{summary['pipelines'][name]['ndcg@10']:.4f}" for name in ("teacher", "compressed")]
    driver.semsearch_shot("metrics")


@pytest.fixture(scope="module")
def locked(served: Served) -> Any:
    """A second server over the same indexes: an API key, no bench folder, a metrics dataset that does not exist."""
    from search.serve.config import Security, ServerConfig
    from search.sources import PipelineSource
    from tests.browser.conftest import serve_in_thread

    config = ServerConfig(
        pipelines=tuple(PipelineSource(name, path) for name, path in served.index_dirs.items()),
        evaluation_dataset=str(served.corpus / "no-such-dataset"),
        security=Security(api_key="s3cret"),
        threads=1,
    )
    yield from serve_in_thread(config)


def test_api_key_is_asked_for_and_sent(browser: Any, locked: str) -> None:
    browser.get(locked + "/")  # the page itself needs no key: it holds no data
    key_box = browser.find_element(By.ID, "api-key")
    wait_for(browser, lambda d: key_box.is_displayed(), "the API key form")
    assert "401" in browser.find_element(By.ID, "error").text
    key_box.send_keys("wrong", Keys.ENTER)
    wait_for(browser, lambda d: key_box.is_displayed(), "the key form again after a wrong key")
    key_box.send_keys("s3cret", Keys.ENTER)
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "input[name=pipeline]")) == 2, "the pipelines")
    assert not browser.find_element(By.ID, "error").is_displayed()
    search(browser, "heart artery")
    assert list(columns_for(browser, "heart artery")) == ["teacher", "compressed"]


def test_bench_view_shows_why_nothing_is_drawn(browser: Any, locked: str) -> None:
    browser.get(locked + "/bench")
    browser.execute_script("sessionStorage.setItem('semsearch-api-key', 's3cret')")
    browser.refresh()
    error = browser.find_element(By.ID, "error")
    wait_for(browser, lambda d: error.is_displayed(), "the bench error")
    assert "404" in error.text
    assert "--bench-dir" in error.text
    status = browser.find_element(By.ID, "metrics-status")
    wait_for(browser, lambda d: "not available (404)" in status.text, "the /evaluation answer: none has run")
    assert "no evaluation has run" in status.text
    browser.find_element(By.ID, "evaluation-run").click()  # the stored key goes with the POST
    wait_for(browser, lambda d: "cannot load dataset" in status.text, "the evaluation's refusal")
    assert "not available (404)" in status.text
    assert browser.find_elements(By.CSS_SELECTOR, "#frontier .point") == []
