// The search page: one query to POST /compare, every pipeline's top-k in a column, hits the reference also found
// linked by its rank and colour, what each pipeline missed listed, per-stage latency bars and the speed-up.
// Everything shown comes from /pipelines and /compare; the page only lays it out.
"use strict";

(function () {
  const { api, clearError, el, focusShortcut, formatMs, formatNumber, handleError, rankColour } = window.semsearch;
  const STAGES = [
    ["tokenize_ms", "tokenize"],
    ["encode_ms", "encode"],
    ["search_ms", "search"],
    ["rescore_ms", "rescore"],
    ["total_ms", "total"],
  ];

  const form = document.getElementById("search-form");
  const queryInput = document.getElementById("query");
  const kInput = document.getElementById("k");
  const button = document.getElementById("search-button");
  const choice = document.getElementById("pipeline-choice");
  const status = document.getElementById("status");
  const columns = document.getElementById("columns");
  let info = null; // GET /pipelines

  // "student-int8 (int8) · RaBitQfs · 104 B/vector · top 8 x k rescored from disk · documents: teacher", from
  // GET /pipelines.
  function describePipeline(name) {
    const about = info && info.pipelines ? info.pipelines[name] : null;
    if (!about) return "";
    const parts = [about.precision ? `${about.encoder} (${about.precision})` : about.encoder, about.factory];
    if (typeof about.bytes_per_vector === "number") parts.push(`${formatNumber(about.bytes_per_vector, 0)} B/vector`);
    const factor = about.search_params ? about.search_params.oversample : undefined;
    if (about.rescore === "vector_file" && factor !== undefined) parts.push(`top ${factor} x k rescored from disk`);
    if (about.doc_encoder && about.doc_encoder !== about.encoder) parts.push(`documents: ${about.doc_encoder}`);
    return parts.filter((part) => part !== undefined && part !== null).join(" · ");
  }

  async function loadPipelines() {
    try {
      info = (await api("/pipelines")).body;
    } catch (err) {
      choice.replaceChildren(el("legend", {}, "Pipelines"), el("span", { class: "muted" }, "not available"));
      handleError(err, loadPipelines);
      return;
    }
    const boxes = Object.keys(info.pipelines).map((name) => {
      const isReference = name === info.reference;
      const box = el("input", {
        type: "checkbox",
        name: "pipeline",
        value: name,
        id: `pipeline-${name}`,
        checked: true,
        disabled: isReference,
      });
      return el(
        "label",
        { class: "pipeline-option", for: `pipeline-${name}`, title: describePipeline(name) },
        box,
        el("span", {}, name),
        isReference ? el("span", { class: "badge" }, "reference") : null,
      );
    });
    choice.replaceChildren(el("legend", {}, "Pipelines"), ...boxes);
    if (info.limits && info.limits.max_k) kInput.max = String(info.limits.max_k);
    const params = new URLSearchParams(window.location.search);
    if (params.get("q")) {
      queryInput.value = params.get("q");
      if (params.get("k")) kInput.value = params.get("k");
      runSearch();
    }
  }

  function chosenPipelines() {
    const boxes = [...choice.querySelectorAll("input[name=pipeline]")];
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    return chosen.length === boxes.length ? undefined : chosen; // undefined: every one (the API's default)
  }

  // k as typed: a number when it is one, else the raw text, so the API's own message explains what is wrong.
  function typedK() {
    const raw = kInput.value.trim();
    if (raw === "") return kInput.validity.badInput ? "not a number" : 10;
    const value = Number(raw);
    return Number.isFinite(value) ? value : raw;
  }

  async function runSearch() {
    clearError();
    const body = { query: queryInput.value, k: typedK() };
    const pipelines = chosenPipelines();
    if (pipelines) body.pipelines = pipelines;
    button.disabled = true;
    status.textContent = "searching…";
    try {
      const result = (await api("/compare", { method: "POST", body })).body;
      render(result);
      status.textContent = `top ${result.k} for “${result.query}”, measured against ${result.reference}`;
      const url = new URL(window.location.href);
      url.searchParams.set("q", result.query);
      url.searchParams.set("k", String(result.k));
      window.history.replaceState(null, "", url);
    } catch (err) {
      columns.replaceChildren();
      status.textContent = "";
      handleError(err, runSearch);
    } finally {
      button.disabled = false;
    }
  }

  function speedupText(speedup, reference) {
    if (!Number.isFinite(speedup)) return "";
    if (speedup >= 1) return `${speedup.toFixed(1)}× faster than ${reference}`;
    return `${(1 / speedup).toFixed(1)}× slower than ${reference}`;
  }

  function latencyBars(timings, maxMs, batchSize) {
    const rows = STAGES.map(([key, label]) => {
      const ms = timings[key];
      const bar = el("span", { class: `bar bar-${label}` });
      bar.style.width = `${maxMs > 0 ? Math.max((ms / maxMs) * 100, ms > 0 ? 0.6 : 0) : 0}%`;
      return el(
        "div",
        { class: `stage stage-${label}`, dataset: { stage: label, ms: String(ms) } },
        el("span", { class: "stage-name" }, label),
        el("span", { class: "bar-track" }, bar),
        el("span", { class: "stage-ms" }, formatMs(ms)),
      );
    });
    const note = batchSize > 1 ? el("p", { class: "muted small" }, `encoded in a batch of ${batchSize} queries`) : null;
    return el("div", { class: "latency", "aria-label": "latency per stage" }, rows, note);
  }

  function marker(rank, isShared, title) {
    const mark = el("span", { class: isShared ? "marker linked" : "marker unlinked", title }, isShared ? rank : "+");
    if (isShared) mark.style.setProperty("--mark", rankColour(rank));
    return mark;
  }

  function hitItem(hit, rank, markerNode, note) {
    return el(
      "li",
      { class: "hit", tabindex: "0", dataset: { id: hit.id } },
      markerNode,
      el(
        "div",
        { class: "hit-body" },
        el("h3", { class: "title" }, hit.title || hit.id),
        el("p", { class: "snippet" }, hit.snippet),
        el(
          "p",
          { class: "meta" },
          el("span", { class: "own-rank" }, `#${rank}`),
          el("span", { class: "doc-id" }, `id ${hit.id}`),
          el("span", { class: "score" }, `score ${formatNumber(hit.score, 4)}`),
          note ? el("span", { class: "found-by" }, note) : null,
        ),
      ),
    );
  }

  // Under the reference's column: what each other pipeline found that the reference did not (its "+" hits).
  function referenceMissed(result, others) {
    const lists = others
      .filter((name) => result.pipelines[name].extra.length > 0)
      .map((name) => {
        const hits = new Map(result.pipelines[name].hits.map((hit) => [hit.id, hit]));
        return el(
          "details",
          { class: "missed not-found", dataset: { by: name } },
          el("summary", {}, `${result.pipelines[name].extra.length} in ${name}'s top-${result.k}, not here`),
          el(
            "ul",
            {},
            result.pipelines[name].extra.map((id) =>
              el(
                "li",
                { class: "missed-item", dataset: { id } },
                marker(null, false, `not in ${result.reference}'s top-${result.k}`),
                el("span", {}, (hits.get(id) && (hits.get(id).title || hits.get(id).snippet)) || id),
                el("span", { class: "doc-id" }, ` (id ${id})`),
              ),
            ),
          ),
        );
      });
    return lists.length ? el("div", {}, lists) : null;
  }

  function render(result) {
    const reference = result.reference;
    const names = [reference, ...Object.keys(result.pipelines).filter((name) => name !== reference)];
    const others = names.slice(1);
    const referenceHits = result.pipelines[reference].hits;
    const titleOf = new Map(referenceHits.map((hit) => [hit.id, hit.title || hit.snippet]));
    const foundBy = new Map(); // reference hit id -> the other pipelines that found it
    for (const name of others) {
      for (const hit of result.pipelines[name].hits) {
        if (hit.reference_rank !== null) foundBy.set(hit.id, [...(foundBy.get(hit.id) || []), name]);
      }
    }
    let maxMs = 0;
    for (const name of names) maxMs = Math.max(maxMs, ...STAGES.map(([key]) => result.pipelines[name].timings[key]));

    const sections = names.map((name) => {
      const answer = result.pipelines[name];
      const isReference = name === reference;
      const recall = answer["recall@k_vs_teacher"];
      const shared = answer.hits.filter((hit) => hit.reference_rank !== null).length;
      const items = answer.hits.map((hit, i) => {
        if (isReference) {
          const by = foundBy.get(hit.id) || [];
          const linked = others.length === 0 || by.length > 0;
          const note = others.length === 0 ? null : by.length ? `also found by ${by.join(", ")}` : `missed by ${others.join(", ")}`;
          const item = hitItem(hit, i + 1, marker(i + 1, true, `rank ${i + 1} of ${reference}`), note);
          item.classList.add(linked ? "shared" : "missed-elsewhere");
          return item;
        }
        const isShared = hit.reference_rank !== null;
        const title = isShared ? `${reference} ranked it #${hit.reference_rank}` : `not in ${reference}'s top-${result.k}`;
        const item = hitItem(hit, i + 1, marker(hit.reference_rank, isShared, title), isShared ? null : `not in ${reference}'s top-${result.k}`);
        item.classList.add(isShared ? "shared" : "extra");
        return item;
      });
      const missed = isReference
        ? referenceMissed(result, others)
        : el(
            "details",
            { class: "missed", open: answer.missing.length > 0 },
            el("summary", {}, `missed ${answer.missing.length} of ${reference}'s top-${result.k}`),
            el(
              "ul",
              {},
              answer.missing.map((id) => {
                const rank = referenceHits.findIndex((hit) => hit.id === id) + 1;
                return el("li", { class: "missed-item", dataset: { id } }, marker(rank, true, `${reference} ranked it #${rank}`), el("span", {}, titleOf.get(id) || id), el("span", { class: "doc-id" }, ` (id ${id})`));
              }),
            ),
          );
      const extra =
        isReference || answer.extra.length === 0
          ? null
          : el("p", { class: "extra-note muted" }, `${answer.extra.length} found here that ${reference} did not (marked +)`);
      return el(
        "section",
        { class: isReference ? "column reference" : "column", dataset: { pipeline: name }, "aria-label": `${name} results` },
        el(
          "header",
          { class: "column-head" },
          el("h2", {}, name, isReference ? el("span", { class: "badge" }, "reference") : null),
          el("p", { class: "about muted" }, describePipeline(name)),
          el(
            "p",
            { class: "recall" },
            el("span", { class: "recall-label" }, `recall@${result.k} vs ${reference} `),
            el("strong", { class: "recall-value" }, formatNumber(recall, 2)),
            el("span", { class: "muted" }, ` (${shared} of ${referenceHits.length} shared)`),
          ),
          el(
            "p",
            { class: !isReference && answer.speedup_vs_reference < 1 ? "speedup slower" : "speedup" },
            isReference ? "the reference" : speedupText(answer.speedup_vs_reference, reference),
          ),
          latencyBars(answer.timings, maxMs, answer.batch_size),
        ),
        el("ol", { class: "hits" }, items),
        missed,
        extra,
      );
    });
    columns.replaceChildren(...sections);
    columns.dataset.count = String(sections.length);
  }

  // Hovering or focusing a hit highlights the same document in every column.
  function highlight(id, on) {
    for (const node of columns.querySelectorAll(".hit, .missed-item")) {
      if (node.dataset.id === id) node.classList.toggle("highlight", on);
    }
  }
  for (const [type, on] of [["mouseover", true], ["mouseout", false], ["focusin", true], ["focusout", false]]) {
    columns.addEventListener(type, (event) => {
      const item = event.target.closest && event.target.closest(".hit, .missed-item");
      if (item) highlight(item.dataset.id, on);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch();
  });
  focusShortcut(queryInput);
  loadPipelines();
})();
