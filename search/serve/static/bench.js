// The /bench view: the recall-vs-latency map from GET /bench/results (what `semsearch bench` measured: every
// configuration, its Pareto flag, the budget pick) and the served pipelines' summary from GET /evaluation (which never
// starts work: the button POSTs /evaluation, then the page polls its progress).
// The page draws; the benchmark and the API decide (frontier, budget pick, figures).
"use strict";

(function () {
  const { api, el, formatMs, formatNumber, handleError, svg, ApiError } = window.semsearch;
  const WIDTH = 900;
  const HEIGHT = 520;
  const MARGIN = { left: 66, right: 24, top: 20, bottom: 54 };
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const METRICS_POLL_MS = 2000;
  const chart = document.getElementById("frontier");
  const wrap = document.getElementById("chart-wrap");
  const tooltip = document.getElementById("tooltip");

  function paramsText(params) {
    const entries = Object.entries(params || {});
    return entries.length ? entries.map(([key, value]) => `${key}=${value}`).join(", ") : "defaults";
  }

  function niceLogTicks(lo, hi) {
    const ticks = [];
    for (let decade = Math.floor(Math.log10(lo)); decade <= Math.ceil(Math.log10(hi)); decade++) {
      for (const step of [1, 2, 5]) {
        const value = step * 10 ** decade;
        if (value >= lo && value <= hi) ticks.push(value);
      }
    }
    return ticks;
  }

  function linearTicks(lo, hi) {
    const step = hi - lo > 0.5 ? 0.1 : hi - lo > 0.2 ? 0.05 : 0.02;
    const ticks = [];
    for (let value = Math.ceil(lo / step) * step; value <= hi + 1e-9; value += step) ticks.push(Number(value.toFixed(4)));
    return ticks;
  }

  function tickLabel(ms) {
    return ms >= 1 ? String(Number(ms.toPrecision(3))) : ms.toPrecision(1);
  }

  function describeRow(row, x, y) {
    return [
      ["encoder", row.precision ? `${row.encoder} (${row.precision})` : row.encoder],
      ["documents", row.doc_encoder],
      ["index", row.index],
      ["params", paramsText(row.params)],
      [y, formatNumber(row[y], 3)],
      ["nDCG@10", formatNumber(row["ndcg@10"], 4)],
      [x.replace("_ms_p50", " ms p50"), formatMs(row[x])],
      ["encode / search", `${formatMs(row.encode_ms_p50)} / ${formatMs(row.search_ms_p50)}`],
      ["bytes/vector", formatNumber(row.bytes_per_vector, 1)],
    ].filter(([, value]) => value !== undefined && value !== null);
  }

  function showTooltip(row, point, x, y) {
    const lines = describeRow(row, x, y).map(([label, value]) =>
      el("div", { class: "tip-line" }, el("span", { class: "tip-label" }, label), el("span", { class: "tip-value" }, value)),
    );
    const flags = [row.pareto ? "on the Pareto frontier" : null, row.budget_pick ? "the budget pick" : null].filter(Boolean);
    tooltip.replaceChildren(...lines, flags.length ? el("div", { class: "tip-flags" }, flags.join(" · ")) : null);
    tooltip.hidden = false;
    const box = point.getBoundingClientRect();
    const outer = wrap.getBoundingClientRect();
    const left = Math.min(box.left - outer.left + 14, outer.width - tooltip.offsetWidth - 4);
    const top = box.top - outer.top + 14 + tooltip.offsetHeight > outer.height ? box.top - outer.top - tooltip.offsetHeight - 8 : box.top - outer.top + 14;
    tooltip.style.left = `${Math.max(left, 0)}px`;
    tooltip.style.top = `${Math.max(top, 0)}px`;
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  function drawFrontier(data) {
    const x = data.x;
    const y = data.y;
    const rows = data.rows.filter((row) => row[x] > 0 && Number.isFinite(row[y]));
    const xs = rows.map((row) => row[x]);
    const ys = rows.map((row) => row[y]);
    const xLo = Math.min(...xs) / 1.3;
    const xHi = Math.max(...xs) * 1.3;
    const yLo = Math.max(0, Math.floor(Math.min(...ys) * 20) / 20 - 0.02);
    const yHi = Math.min(1.0, Math.ceil(Math.max(...ys) * 20) / 20) + 0.01;
    const plotW = WIDTH - MARGIN.left - MARGIN.right;
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const sx = (value) => MARGIN.left + ((Math.log10(value) - Math.log10(xLo)) / (Math.log10(xHi) - Math.log10(xLo))) * plotW;
    const sy = (value) => MARGIN.top + (1 - (value - yLo) / (yHi - yLo)) * plotH;

    const grid = svg("g", { class: "grid" });
    const axes = svg("g", { class: "axes" });
    for (const tick of niceLogTicks(xLo, xHi)) {
      grid.append(svg("line", { x1: sx(tick), x2: sx(tick), y1: MARGIN.top, y2: MARGIN.top + plotH }));
      axes.append(svg("text", { x: sx(tick), y: MARGIN.top + plotH + 18, "text-anchor": "middle", text: tickLabel(tick) }));
    }
    for (const tick of linearTicks(yLo, yHi)) {
      grid.append(svg("line", { x1: MARGIN.left, x2: MARGIN.left + plotW, y1: sy(tick), y2: sy(tick) }));
      axes.append(svg("text", { x: MARGIN.left - 8, y: sy(tick) + 4, "text-anchor": "end", text: tick.toFixed(2) }));
    }
    axes.append(svg("rect", { class: "frame", x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }));
    axes.append(svg("text", { class: "axis-title", x: MARGIN.left + plotW / 2, y: HEIGHT - 12, "text-anchor": "middle", text: `${x.replace("_ms_p50", "")} ms per query, p50 (log scale)` }));
    axes.append(svg("text", { class: "axis-title", transform: `translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle", text: y }));

    const encoders = [...new Set(rows.map((row) => row.encoder))];
    const colour = new Map(encoders.map((name, i) => [name, PALETTE[i % PALETTE.length]]));
    const frontier = rows.filter((row) => row.pareto).sort((a, b) => a[x] - b[x] || b[y] - a[y]);
    const steps = [];
    frontier.forEach((row, i) => {
      if (i > 0) steps.push(`${sx(row[x])},${sy(frontier[i - 1][y])}`);
      steps.push(`${sx(row[x])},${sy(row[y])}`);
    });
    const line = steps.length > 1 ? svg("polyline", { class: "frontier-line", points: steps.join(" ") }) : null;

    const points = svg("g", { class: "points" });
    // Non-Pareto points first, so the frontier is drawn on top.
    const ordered = [...rows].sort((a, b) => Number(a.pareto) - Number(b.pareto) || Number(a.budget_pick) - Number(b.budget_pick));
    for (const row of ordered) {
      const cx = sx(row[x]);
      const cy = sy(row[y]);
      const classes = ["point", row.pareto ? "pareto" : "", row.budget_pick ? "budget-pick" : ""].filter(Boolean).join(" ");
      const label = `${row.encoder}, ${row.index}, ${paramsText(row.params)}: ${y} ${formatNumber(row[y], 3)}, ${formatMs(row[x])}`;
      const group = svg("g", { class: classes, tabindex: "0", role: "img", "aria-label": label, "data-encoder": row.encoder, "data-index": row.index });
      if (row.budget_pick) {
        group.append(svg("path", { class: "budget-star", d: star(cx, cy, 13, 6) }));
      }
      const dot = svg("circle", { cx, cy, r: row.pareto ? 6 : 4.5 });
      dot.style.fill = colour.get(row.encoder);
      group.append(dot);
      const show = () => showTooltip(row, dot, x, y);
      group.addEventListener("mouseenter", show);
      group.addEventListener("focus", show);
      group.addEventListener("mouseleave", hideTooltip);
      group.addEventListener("blur", hideTooltip);
      points.append(group);
    }
    chart.replaceChildren(grid, axes, line, points);

    const legend = document.getElementById("legend");
    legend.replaceChildren(
      ...encoders.map((name) => {
        const chip = el("span", { class: "chip" });
        chip.style.background = colour.get(name);
        return el("li", {}, chip, name);
      }),
      el("li", {}, el("span", { class: "chip ring" }), "Pareto frontier"),
      el("li", {}, el("span", { class: "chip star-chip" }, "★"), "budget pick"),
    );
    return frontier;
  }

  function star(cx, cy, outer, inner) {
    const corners = [];
    for (let i = 0; i < 10; i++) {
      const radius = i % 2 === 0 ? outer : inner;
      const angle = -Math.PI / 2 + (i * Math.PI) / 5;
      corners.push(`${(cx + radius * Math.cos(angle)).toFixed(1)},${(cy + radius * Math.sin(angle)).toFixed(1)}`);
    }
    return `M${corners.join("L")}Z`;
  }

  function fillParetoTable(frontier, x, y) {
    const body = document.querySelector("#pareto-table tbody");
    body.replaceChildren(
      ...frontier.map((row) =>
        el(
          "tr",
          { class: row.budget_pick ? "budget-pick" : "" },
          el("td", {}, row.precision ? `${row.encoder} (${row.precision})` : row.encoder),
          el("td", {}, row.index),
          el("td", {}, paramsText(row.params)),
          el("td", { class: "num" }, formatNumber(row[y], 3)),
          el("td", { class: "num" }, formatNumber(row["ndcg@10"], 4)),
          el("td", { class: "num" }, formatMs(row[x])),
          el("td", { class: "num" }, formatNumber(row.bytes_per_vector, 1)),
          el("td", {}, row.budget_pick ? "★ budget pick" : ""),
        ),
      ),
    );
  }

  async function loadBench() {
    const run = document.getElementById("bench-run");
    let data;
    try {
      data = (await api("/bench/results")).body;
    } catch (err) {
      run.textContent = "no recall-vs-latency map to show.";
      handleError(err, loadBench);
      return;
    }
    const machine = data.machine || {};
    const facts = [
      data.dataset ? `${data.dataset}${data.split ? ` (${data.split})` : ""}` : null,
      data.queries ? `${data.queries} queries` : null,
      `${data.rows.length} configurations, ${data.rows.filter((row) => row.pareto).length} on the frontier`,
      machine.cpu ? `${machine.cpu}, ${machine.cores} cores, ${machine.threads} threads` : null,
    ].filter(Boolean);
    run.textContent = facts.join(" · ");
    if (data.budget && data.budget.message) {
      const budget = document.getElementById("budget");
      budget.replaceChildren(el("strong", {}, "★ Budget pick: "), data.budget.message);
      budget.hidden = false;
    }
    const frontier = drawFrontier(data);
    fillParetoTable(frontier, data.x, data.y);
  }

  const METRIC_ROWS = [
    ["encoder", "encoder", null],
    ["doc_encoder", "documents", null],
    ["index", "index", null],
    ["ndcg@10", "nDCG@10", 4],
    ["recall@100", "recall@100", 4],
    ["mrr@10", "MRR@10", 4],
    ["recall@10_vs_teacher", "recall@10 vs reference", 3],
    ["recall@10_vs_exact", "recall@10 vs exact", 3],
    ["encode_ms_p50", "encode ms p50", "ms"],
    ["total_ms_p50", "total ms p50", "ms"],
    ["total_ms_p95", "total ms p95", "ms"],
    ["total_ms_p99", "total ms p99", "ms"],
    ["bytes_per_vector", "bytes/vector", 1],
    ["model_bytes", "model MB", "mb"],
  ];

  function metricCell(value, format) {
    if (value === undefined || value === null) return "–";
    if (format === null) return String(value);
    if (format === "ms") return formatMs(value);
    if (format === "mb") return formatNumber(value / 1e6, 1);
    return formatNumber(value, format);
  }

  function fillMetrics(summary) {
    const table = document.getElementById("metrics-table");
    const names = Object.keys(summary.pipelines || {});
    table.querySelector("thead").replaceChildren(el("tr", {}, el("th", {}, ""), names.map((name) => el("th", {}, name === summary.reference ? `${name} (reference)` : name))));
    table.querySelector("tbody").replaceChildren(
      ...METRIC_ROWS.map(([key, label, format]) =>
        el("tr", { dataset: { metric: key } }, el("th", {}, label), names.map((name) => el("td", { class: format === null ? "" : "num" }, metricCell(summary.pipelines[name][key], format)))),
      ),
    );
    table.hidden = false;
    const status = document.getElementById("metrics-status");
    status.textContent = `${summary.dataset} (${summary.split}), ${summary.queries} queries, one at a time; computed ${summary.computed_at || ""}`;
  }

  const runButton = document.getElementById("evaluation-run");

  function showProgress(body) {
    const progress = body.progress || {};
    const status = document.getElementById("metrics-status");
    status.classList.remove("error-inline");
    status.textContent = `the server is evaluating its pipelines: ${progress.stage || "starting"} (${progress.done || 0} of ${progress.total || "?"} steps)…`;
    runButton.hidden = true;
    window.setTimeout(loadMetrics, METRICS_POLL_MS);
  }

  function showUnavailable(err, retry) {
    if (err instanceof ApiError && err.status === 401) {
      handleError(err, retry);
      return;
    }
    const status = document.getElementById("metrics-status");
    status.replaceChildren(el("strong", {}, `not available (${err.status || "no answer"}): `), err.message);
    status.classList.add("error-inline");
    runButton.hidden = false;
    runButton.disabled = false;
  }

  async function loadMetrics() {
    try {
      const answer = await api("/evaluation");
      if (answer.status === 202) {
        showProgress(answer.body);
        return;
      }
      runButton.hidden = true;
      fillMetrics(answer.body);
    } catch (err) {
      showUnavailable(err, loadMetrics);
    }
  }

  async function startEvaluation() {
    runButton.disabled = true;
    try {
      showProgress((await api("/evaluation", { method: "POST", body: {} })).body);
    } catch (err) {
      showUnavailable(err, startEvaluation);
    }
  }

  runButton.addEventListener("click", startEvaluation);

  loadBench();
  loadMetrics();
})();
