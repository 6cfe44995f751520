// The operator console (/ops): refreshes its views from /ops/api/* every few seconds and sends
// the levers as JSON with the CSRF double submit (api/security.py). Text from the server is
// only ever set as textContent, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);

function csrf() {
  const found = document.cookie.split(";").map((c) => c.trim().split("="))
    .find(([name]) => name === "csrf_token");
  return found ? found[1] : "";
}

async function call(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  let doc = null;
  try { doc = await response.json(); } catch (e) { doc = null; }
  if (response.status === 401 && !url.startsWith("/ops/login")) {
    window.location.assign("/ops/login");
  }
  if (!response.ok || !doc || !doc.success) {
    const error = new Error(doc && doc.error ? doc.error.message : `HTTP ${response.status}`);
    error.status = response.status;
    error.type = doc && doc.error ? doc.error.type : null;
    error.details = doc && doc.error ? doc.error.details : null;
    throw error;
  }
  return doc.data;
}

function say(text, ok) {
  const box = $("#message") || $("#login-message");
  box.textContent = text;
  box.classList.toggle("ok", Boolean(ok));
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function figures(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => {
    const value = el("dd", v);
    value.dataset.key = k;
    return [el("dt", k), value];
  }));
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC") : "–";
}

function reason() {
  const value = $("#reason").value.trim();
  return value ? value : null;
}

// --- sign-in -----------------------------------------------------------------------------
function setupLogin() {
  $("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("POST", "/ops/login", { key: $("#key").value.trim() });
      window.location.assign("/ops");
    } catch (error) {
      say(error.message);
    }
  });
}

// --- overview ----------------------------------------------------------------------------
function renderOverview(data) {
  figures($("#statuses"), Object.entries(data.statuses));
  const b = data.budgets;
  figures($("#budgets"), [
    ["create", `${b.create.requestsInLastMinute}/${b.create.maxRPM} per min (${b.create.rpmUsagePercent}%)`],
    ["read", `${b.read.requestsInLastMinute}/${b.read.maxRPM} per min (${b.read.rpmUsagePercent}%)`],
  ]);
  const s = data.submissions;
  $("#submissions").textContent = s.paused
    ? `PAUSED (${s.source}) since ${when(s.changedAt)}${s.changedBy ? " by " + s.changedBy : ""}${s.reason ? ": " + s.reason : ""}`
    : "running";
  $("#submissions").dataset.paused = String(s.paused);
  const l = data.leader;
  $("#leader").textContent = l
    ? `${l.host} pid ${l.pid}: cycle ${l.cycle}, last cycle ${l.lastCycleSecondsAgo} s ago`
    : "no leader seen";
  figures($("#queues"), Object.entries(data.brokerQueues));
  $("#processes tbody").replaceChildren(...data.processes.map((p) => {
    const row = el("tr");
    row.dataset.kind = p.kind;
    row.append(el("td", p.kind), el("td", p.host), el("td", p.pid),
      el("td", p.queues ? p.queues.join(", ") : ""), el("td", p.leader ? "yes" : ""),
      el("td", `${p.seenSecondsAgo} s ago`));
    return row;
  }));
  $("#stores tbody").replaceChildren(...data.stores.map(storeRow));
  $("#audit").replaceChildren(...data.audit.map((a) => {
    const item = el("li");
    item.append(el("span", when(a.at) + " ", "when"), el("strong", a.actor),
      el("span", ` ${a.action} ${a.target}`),
      el("span", a.reason ? ` — ${a.reason}` : ""),
      el("span", Object.keys(a.details || {}).length ? ` ${JSON.stringify(a.details)}` : ""));
    return item;
  }));
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function storeRow(s) {
  const row = el("tr", undefined, s.paused ? "paused" : "");
  row.dataset.store = s.storeId;
  const num = (v) => el("td", v === null || v === undefined ? "–" : v, "num");
  const rate = s.failureRate === null ? "–" : `${(s.failureRate * 100).toFixed(1)}%`;
  const toggle = el("button", s.paused ? "Resume" : "Pause", "small " + (s.paused ? "" : "secondary"));
  toggle.type = "button";
  toggle.className += " toggle";
  toggle.addEventListener("click", () => setStore(s.storeId, { paused: !s.paused }));
  const edit = el("button", "Edit", "small secondary edit");
  edit.type = "button";
  edit.addEventListener("click", () => {
    $("#store-id").value = s.storeId;
    $("#store-weight").value = s.weight;
    $("#store-quota").value = s.quota === null ? "" : s.quota;
  });
  const actions = el("td");
  actions.append(toggle, edit);
  row.append(el("td", s.storeId), num(s.pending), num(s.inFlight), num(s.throughputPerHour),
    num(rate), num(s.p50Seconds), num(s.p95Seconds), num(s.weight), num(s.quota),
    el("td", s.paused ? `paused${s.pausedReason ? ": " + s.pausedReason : ""}` : "", "state"),
    actions);
  return row;
}

async function setStore(storeId, change) {
  try {
    const data = await call("POST", `/ops/api/stores/${encodeURIComponent(storeId)}`,
      { ...change, reason: reason() });
    say(`store ${data.storeId}: weight ${data.weight}, quota ${data.quota ?? "default"}, ${data.paused ? "paused" : "running"}`, true);
    await refresh();
  } catch (error) {
    say(error.message);
  }
}

// --- failed items ------------------------------------------------------------------------
function filterValues() {
  const form = $("#failed-filter");
  const out = {};
  for (const input of form.querySelectorAll("input")) {
    const value = input.value.trim();
    if (!value) continue;
    out[input.name] = input.type === "datetime-local" ? value + ":00+00:00" : value;
  }
  return out;
}

function failedRow(item) {
  const row = el("tr");
  row.dataset.item = item.id;
  const error = el("td");
  error.append(el("code", item.errorCode), el("span", item.errorMessage, "msg"));
  const input = el("td");
  if (item.inputUrl) {
    const link = el("a", "view");
    link.href = item.inputUrl;
    link.target = "_blank";
    link.rel = "noopener";
    input.append(link);
  }
  const actions = el("td");
  const retry = el("button", "Retry", "small retry");
  retry.type = "button";
  retry.addEventListener("click", () => act("/ops/api/retry", { itemId: item.id }, "retried"));
  const retryJob = el("button", "Retry job", "small secondary");
  retryJob.type = "button";
  retryJob.addEventListener("click", () => act("/ops/api/retry", { jobId: item.jobId }, "retried"));
  const cancelJob = el("button", "Cancel job", "small secondary");
  cancelJob.type = "button";
  cancelJob.addEventListener("click", () => {
    if (window.confirm(`Cancel every unfinished item of job ${item.jobId}?`)) {
      act("/ops/api/cancel", { jobId: item.jobId }, "canceled");
    }
  });
  actions.append(retry, retryJob, cancelJob);
  row.append(el("td", item.id), el("td", item.jobId), el("td", item.storeId), el("td", item.model),
    error, el("td", item.attempts, "num"), el("td", when(item.createdAt)),
    el("td", when(item.completedAt)), input, actions);
  return row;
}

let matching = 0;

async function loadFailed() {
  const query = new URLSearchParams(filterValues()).toString();
  const data = await call("GET", `/ops/api/failed${query ? "?" + query : ""}`);
  matching = data.total;
  $("#failed-count").textContent = `${data.total} failed item(s) match`;
  $("#retry-matching").disabled = data.total === 0;
  $("#failed tbody").replaceChildren(...data.items.map(failedRow));
}

// A retry leaves items whose uploaded source retention deleted FAILED and counts them.
function skippedText(data) {
  const n = data.sourceDeleted || 0;
  return n ? `; ${n} skipped: retention deleted their uploaded source` : "";
}

async function act(url, body, verb) {
  try {
    const data = await call("POST", url, { ...body, reason: reason() });
    say(`${data[verb]} item(s) ${verb}${skippedText(data)}`, true);
    await refresh();
  } catch (error) {
    say(error.message);
  }
}

async function retryMatching() {
  const filter = filterValues();
  if (filter.job) filter.job = Number(filter.job);
  const count = matching;
  if (!window.confirm(`Retry ${count} failed item(s) matching this filter?`)) return;
  try {
    const data = await call("POST", "/ops/api/retry", { filter, expected: count, reason: reason() });
    say(`${data.retried} item(s) retried${skippedText(data)}`, true);
  } catch (error) {
    const recount = error.status === 409 && error.type === "conflict";
    say(recount ? `${error.message}: look again and confirm` : error.message);
  }
  await refresh();
}

// --- page --------------------------------------------------------------------------------
async function refresh() {
  try {
    renderOverview(await call("GET", "/ops/api/overview"));
    await loadFailed();
  } catch (error) {
    say(error.message);
  }
}

function setupConsole() {
  const seconds = Number($("#ops").dataset.refresh || "3");
  $("#sign-out").addEventListener("click", async () => {
    await call("POST", "/ops/logout", {}).catch(() => null);
    window.location.assign("/ops/login");
  });
  $("#pause-all").addEventListener("click", () => {
    if (window.confirm("Pause submissions of every store?")) {
      call("POST", "/ops/api/submissions", { paused: true, reason: reason() })
        .then(() => { say("submissions paused", true); return refresh(); })
        .catch((e) => say(e.message));
    }
  });
  $("#resume-all").addEventListener("click", () => {
    call("POST", "/ops/api/submissions", { paused: false, reason: reason() })
      .then(() => { say("submissions resumed", true); return refresh(); })
      .catch((e) => say(e.message));
  });
  $("#store-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const change = {};
    const weight = $("#store-weight").value.trim();
    const quota = $("#store-quota").value.trim();
    const paused = $("#store-paused").value;
    if (weight) change.weight = Number(weight);
    if (quota) change.quota = Number(quota);
    if (paused) change.paused = paused === "true";
    setStore($("#store-id").value.trim(), change);
  });
  $("#failed-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadFailed().catch((e) => say(e.message));
  });
  $("#retry-matching").addEventListener("click", retryMatching);
  const target = () => ({ [$("#target-kind").value]: Number($("#target-id").value.trim()) });
  $("#target-retry").addEventListener("click", () => act("/ops/api/retry", target(), "retried"));
  $("#target-cancel").addEventListener("click", () => {
    const t = target();
    const what = Object.keys(t)[0] === "jobId" ? "job" : "item";
    if (window.confirm(`Cancel ${what} ${Object.values(t)[0]}?`)) {
      act("/ops/api/cancel", t, "canceled");
    }
  });
  refresh();
  window.setInterval(refresh, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  if ($("#login")) setupLogin();
  if ($("#ops")) setupConsole();
});
