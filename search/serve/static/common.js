// Shared by the pages: calling the JSON API, building DOM nodes from text, showing errors, asking for an API key.
// Every text that comes from the corpus or the API is inserted as a text node or textContent, never as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "semsearch-api-key";

  class ApiError extends Error {
    constructor(status, message, payload) {
      super(message);
      this.status = status;
      this.payload = payload;
    }
  }

  // The `detail` of an API error as one line: a string as is, validation items as "loc: msg; ...".
  function describeDetail(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((item) => {
          const loc = Array.isArray(item && item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
          const msg = item && item.msg !== undefined ? String(item.msg) : JSON.stringify(item);
          return loc ? `${loc}: ${msg}` : msg;
        })
        .join("; ");
    }
    return JSON.stringify(detail);
  }

  // Call the API; resolves to {status, body} for 2xx, throws ApiError (with the API's message) otherwise.
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method: options.method || "GET", headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the server did not answer (${err.message})`, null);
    }
    const text = await response.text();
    let payload = null;
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (err) {
      payload = null;
    }
    if (!response.ok) {
      const message =
        payload && payload.detail !== undefined ? describeDetail(payload.detail) : `HTTP ${response.status}`;
      throw new ApiError(response.status, message, payload);
    }
    return { status: response.status, body: payload };
  }

  // An element with properties and children; strings become text nodes (never parsed as HTML).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = String(value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child) node.append(child);
    }
    return node;
  }

  function errorRegion() {
    return document.getElementById("error");
  }

  function showError(err) {
    const region = errorRegion();
    let label = "Error: ";
    if (err instanceof ApiError) label = err.status ? `The API answered ${err.status}: ` : "No answer: ";
    region.replaceChildren(el("strong", {}, label), err.message);
    region.hidden = false;
  }

  function clearError() {
    const region = errorRegion();
    region.hidden = true;
    region.replaceChildren();
  }

  // On 401: show the key form; once a key is given, keep it for this tab and call every waiting `retry`.
  const waiting = [];

  function askForKey(retry) {
    const box = document.getElementById("auth");
    const form = document.getElementById("auth-form");
    const input = document.getElementById("api-key");
    waiting.push(retry);
    box.hidden = false;
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      input.value = "";
      box.hidden = true;
      for (const again of waiting.splice(0)) again();
    };
  }

  // Show what went wrong; a 401 asks for the key and retries.
  function handleError(err, retry) {
    if (err instanceof ApiError && err.status === 401 && retry) {
      showError(err);
      askForKey(() => {
        clearError();
        retry();
      });
      return;
    }
    showError(err);
  }

  function formatMs(ms) {
    if (!Number.isFinite(ms)) return "–";
    if (ms >= 100) return `${ms.toFixed(0)} ms`;
    if (ms >= 10) return `${ms.toFixed(1)} ms`;
    return `${ms.toFixed(2)} ms`;
  }

  function formatNumber(value, digits) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
  }

  // A distinct, light colour per reference rank (golden-angle hues), so linked hits share a colour.
  function rankColour(rank) {
    return `hsl(${Math.round(((rank - 1) * 137.508) % 360)}, 70%, 78%)`;
  }

  // "/" focuses the first text box of the page, unless the person is typing somewhere.
  function focusShortcut(input) {
    document.addEventListener("keydown", (event) => {
      const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement && document.activeElement.tagName);
      if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        input.focus();
        input.select();
      }
    });
  }

  window.semsearch = {
    ApiError,
    api,
    askForKey,
    clearError,
    describeDetail,
    el,
    focusShortcut,
    formatMs,
    formatNumber,
    handleError,
    rankColour,
    showError,
    svg,
  };
})();
