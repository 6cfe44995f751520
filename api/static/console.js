// imageopt console: parameter form, upload with size preview and analysis hint, live progress
// (server-sent events, polling as fallback), before/after slider, download, history. Every
// visible string comes from the page's catalogue (#i18n: static/i18n/{lang}.json); numbers and
// dates are formatted for the page's language (Intl). No framework; CSP allows only this
// same-origin script.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const app = $("#app");
  const maxBytes = Number(app.dataset.maxBytes);
  const maxFiles = Number(app.dataset.maxFiles);
  const allowed = ["image/jpeg", "image/png", "image/webp"];
  const lang = app.dataset.lang || "en";
  const catalogue = JSON.parse($("#i18n").textContent);
  const number = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
  const PREVIEW_FILES = 3; // size previews per selection (each is one request against the limit)
  let files = [];
  let events = null;
  let pollTimer = null;
  let generation = 0; // bumps on every new selection: late answers for older ones are dropped
  const previews = new Map(); // "generation/index/model/params/preset" -> promise of the preview
  // Feature flags in force (GET /api/flags): the size preview, the analysis and the tour are
  // shown only when theirs is on; if the flags cannot be read, none of them is.
  const flagsReady = fetch("/api/flags", { credentials: "same-origin" })
    .then((r) => r.json()).then((b) => (b && b.success ? b.data.flags : {}), () => ({}));

  // The catalogue's text for key, {name} placeholders filled from values (the key itself if missing).
  function t(key, values) {
    let text = catalogue[key] || key;
    for (const [k, v] of Object.entries(values || {})) text = text.split(`{${k}}`).join(String(v));
    return text;
  }

  // An API error as a sentence in the page's language: the catalogue's text for its type
  // (a file-related one prefixed by the file's name), else the server's own message.
  function errorText(e) {
    const key = `error.${e.type}`;
    if (!catalogue[key]) return e.message;
    if (e.type === "validation_error") return t(key, { message: e.message });
    if (e.type === "http_error") return t(key, { status: e.status });
    const file = e.details && e.details.file;
    return file ? `${file}: ${t(key)}` : t(key);
  }

  function statusText(status) {
    return t(`status.${status}`);
  }

  function cookie(name) {
    const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
  }

  function say(text, kind) {
    const box = $("#message");
    box.textContent = text;
    box.className = "message" + (kind === "info" ? " info" : "");
    box.hidden = !text;
  }

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = cookie("csrf_token");
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok || !body || !body.success) {
      const err = body && body.error ? body.error : { type: "http_error", message: "HTTP " + response.status };
      const retry = response.headers.get("Retry-After");
      throw Object.assign(new Error(err.message), {
        type: err.type, retry: retry, details: err.details || {}, status: response.status,
      });
    }
    return body.data;
  }
  window.imageoptConsole = { t: t, api: api, errorText: errorText }; // for presets.js

  async function refreshUsage() {
    try {
      const data = await api("/api/usage");
      const u = data.usage;
      $("#usage").textContent = u.limit
        ? t("usage.of", { used: number.format(u.used), limit: number.format(u.limit) })
        : t("usage.count", { used: number.format(u.used) });
    } catch (e) { $("#usage").textContent = t("usage.unavailable"); }
  }

  function choose(list) {
    say("");
    const picked = Array.from(list);
    const bad = picked.filter((f) => f.size > maxBytes);
    if (bad.length) say(t("upload.tooBig", { name: bad[0].name, mb: number.format(Math.round(maxBytes / 1048576)) }));
    const wrongType = picked.filter((f) => f.type && !allowed.includes(f.type));
    if (wrongType.length) say(t("upload.wrongType", { name: wrongType[0].name }));
    files = picked.filter((f) => f.size <= maxBytes && (!f.type || allowed.includes(f.type))).slice(0, maxFiles);
    const ul = $("#chosen");
    ul.replaceChildren();
    for (const f of files) {
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.src = URL.createObjectURL(f);
      img.alt = "";
      const meta = document.createElement("span");
      meta.className = "meta";
      const name = document.createElement("span");
      name.className = "file-name";
      name.textContent = f.name;
      const estimate = document.createElement("small");
      estimate.className = "estimate";
      meta.append(name, estimate);
      li.append(img, meta);
      ul.append(li);
    }
    $("#start").disabled = files.length === 0;
    generation += 1;
    previews.clear();
    flagsReady.then((flags) => {
      if (flags.SIZE_PREVIEW_ENABLED) showPreviews();
      if (flags.IMAGE_ANALYSIS_ENABLED) analyzeFirst();
    });
  }

  function kb(bytes) {
    return bytes >= 1048576 ? `${number.format(bytes / 1048576)} MB` : `${number.format(Math.max(1, Math.round(bytes / 1024)))} KB`;
  }

  function imageForm(file, fields) {
    const form = new FormData();
    form.append("image", file, file.name);
    for (const [k, v] of Object.entries(fields || {})) form.append(k, v);
    return form;
  }

  // The form's model parameters as the API takes them, or null while one is out of its
  // limits (quietly: the preview waits; Enhance names the field).
  function currentParams() {
    const out = {};
    for (const input of document.querySelectorAll("#param-fields [name]")) {
      if (!input.checkValidity()) return null;
      const type = input.dataset.type;
      if (type === "boolean") out[input.name] = input.checked;
      else if (type === "integer" || type === "number") {
        if (input.value !== "") out[input.name] = Number(input.value);
      } else out[input.name] = input.value;
    }
    return out;
  }

  // Size preview (POST /api/preview) of what the pipeline stores for the chosen model, its
  // parameters and the preset (none: the model's own file), for the first few files.
  function showPreviews() {
    const preset = $("#preset").value;
    const model = $("#model").value;
    const params = currentParams();
    const choice = `${model}/${JSON.stringify(params)}/${preset}`;
    const current = () => `${$("#model").value}/${JSON.stringify(currentParams())}/${$("#preset").value}`;
    const rows = Array.from(document.querySelectorAll("#chosen li .estimate"));
    rows.forEach((el, i) => {
      el.classList.remove("error");
      if (i >= PREVIEW_FILES || params === null) { el.textContent = ""; return; }
      const key = `${generation}/${i}/${choice}`;
      if (!previews.has(key)) {
        const fields = { model: model, params: JSON.stringify(params) };
        if (preset) fields.preset = preset;
        previews.set(key, api("/api/preview", { method: "POST", body: imageForm(files[i], fields) }));
      }
      el.textContent = t("preview.estimating");
      const mine = generation;
      previews.get(key).then((p) => {
        if (mine !== generation || current() !== choice) return;
        const type = p.contentType.replace("image/", "").toUpperCase();
        el.textContent = t(p.preset ? "preview.line" : "preview.model", {
          size: kb(p.estimatedBytes), preset: p.preset, width: p.width, height: p.height, type: type,
          input: kb(p.inputBytes), model: p.model ? p.model.name : model,
        });
        el.title = t("preview.title");
      }, (e) => {
        if (mine !== generation || current() !== choice) return;
        previews.delete(key);
        el.classList.add("error");
        el.textContent = t("preview.failed", { message: errorText(e) });
      });
    });
  }

  // Analysis (POST /api/analyze) of the first file: the recommended model and preset as a hint.
  async function analyzeFirst() {
    const hint = $("#hint");
    hint.hidden = true;
    if (!files.length) return;
    const mine = generation;
    const file = files[0];
    try {
      const a = await api("/api/analyze", { method: "POST", body: imageForm(file) });
      if (mine !== generation) return;
      const r = a.recommendation;
      const params = Object.entries(r.params).map(([k, v]) => `${k} ${v}`).join(", ");
      $("#hint-text").textContent = t("hint.text", {
        name: file.name, width: a.width, height: a.height, kind: a.kind,
        transparent: a.transparent ? t("hint.transparent") : "",
        faces: a.faces ? t("hint.faces", { count: number.format(a.faces) }) : "",
        model: r.model, params: params ? ` (${params})` : "", modelReason: r.modelReason,
        preset: r.preset, presetReason: r.presetReason,
      }) + (a.checksNotRun.length
        ? t("hint.notRun", { checks: a.checksNotRun.map((c) => t(`check.${c}`)).join(", ") })
        : "");
      const apply = $("#hint-apply");
      apply.hidden = !$(`#model option[value="${CSS.escape(r.model)}"]`) || !$(`#preset option[value="${CSS.escape(r.preset)}"]`);
      apply.onclick = () => {
        $("#model").value = r.model;
        $("#preset").value = r.preset;
        togglePrompt();
        for (const [k, v] of Object.entries(r.params)) {
          const input = document.getElementById(`param-${k}`);
          if (!input) continue;
          if (input.type === "checkbox") input.checked = v === true; else input.value = String(v);
        }
        refreshPreviews();
      };
      hint.classList.remove("error");
      hint.hidden = false;
    } catch (e) {
      if (mine !== generation) return;
      const text = errorText(e);
      $("#hint-text").textContent = text.includes(file.name) ? text : `${file.name}: ${text}`;
      $("#hint-apply").hidden = true;
      hint.classList.add("error");
      hint.hidden = false;
    }
  }

  function togglePrompt() {
    const opt = $("#model").selectedOptions[0];
    $("#prompt-row").hidden = !opt || opt.dataset.prompt !== "yes";
    $("#prompt").required = !$("#prompt-row").hidden;
    renderParams();
  }

  // The parameter form: one field per parameter of the chosen model, with the allowlist's
  // type, limits and default (GET /api/models' "parameters"); the server checks them again.
  const models = JSON.parse($("#models-data").textContent);

  function paramLabel(p) {
    const name = catalogue[`param.${p.name}`] || p.name.replace(/_/g, " ");
    if (p.min !== undefined && p.max !== undefined) {
      return t("param.range", { name: name, min: number.format(p.min), max: number.format(p.max) });
    }
    return name;
  }

  function paramInput(p) {
    let input;
    if (p.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = p.default === true;
    } else if (p.choices) {
      input = document.createElement("select");
      for (const c of p.choices) {
        const opt = document.createElement("option");
        opt.value = c;
        opt.textContent = c;
        opt.selected = c === p.default;
        input.append(opt);
      }
    } else {
      input = document.createElement("input");
      input.type = "number";
      input.min = String(p.min);
      input.max = String(p.max);
      input.step = p.type === "integer" ? "1" : "any";
      input.required = p.default !== null && p.default !== undefined;
      if (input.required) input.value = String(p.default);
      else input.placeholder = t("form.providerDefault");
    }
    input.id = `param-${p.name}`;
    input.name = p.name;
    input.dataset.type = p.type;
    return input;
  }

  function renderParams() {
    const spec = models.find((m) => m.name === $("#model").value);
    const box = $("#param-fields");
    box.replaceChildren();
    const params = spec ? spec.parameters : [];
    $("#params").hidden = params.length === 0;
    for (const p of params) {
      const label = document.createElement("label");
      label.className = p.type === "boolean" ? "check" : "";
      const text = document.createElement("span");
      text.textContent = paramLabel(p);
      const input = paramInput(p);
      label.htmlFor = input.id;
      if (p.type === "boolean") label.append(input, text); else label.append(text, input);
      box.append(label);
    }
  }

  // The form's values as the API's params object; null (and the field focused) when one is
  // out of its limits, so nothing is uploaded for a request the server would refuse.
  function readParams() {
    const out = {};
    for (const input of document.querySelectorAll("#param-fields [name]")) {
      const label = input.closest("label").textContent.trim();
      if (!input.checkValidity()) {
        say(t("param.invalid", { label: label, message: input.validationMessage }));
        input.focus();
        return null;
      }
      const type = input.dataset.type;
      if (type === "boolean") out[input.name] = input.checked;
      else if (type === "integer" || type === "number") {
        if (input.value !== "") out[input.name] = Number(input.value);
      } else out[input.name] = input.value;
    }
    return out;
  }

  function renderItem(item, li) {
    li.dataset.status = item.status;
    li.dataset.id = item.id;
    li.querySelector(".name").textContent = item.name || t("item.name", { id: item.id });
    const badge = li.querySelector(".status");
    badge.textContent = statusText(item.status);
    badge.dataset.status = item.status;
    const compare = li.querySelector(".compare");
    const facts = li.querySelector(".facts");
    const link = li.querySelector(".download");
    // Files retention deleted have no link: say "expired" rather than show a broken image.
    const expired = [item.inputExpired && "original", item.resultExpired && "result"].filter(Boolean);
    li.dataset.expired = expired.join(" ");
    const what = expired.map((w) => t(`item.${w}`)).join(t("item.and"));
    const note = expired.length ? t("item.expiredNote", { what: what }) : "";
    if (item.status === "DONE" && item.resultUrl) {
      const before = compare.querySelector(".before");
      const after = compare.querySelector(".after");
      if (item.inputUrl && before.getAttribute("src") !== item.inputUrl) before.src = item.inputUrl;
      before.hidden = !item.inputUrl;
      compare.querySelector(".slider").hidden = !item.inputUrl;
      compare.querySelector(".tag-before").hidden = !item.inputUrl;
      if (after.getAttribute("src") !== item.resultUrl) after.src = item.resultUrl;
      compare.hidden = false;
      facts.textContent = t("item.facts", {
        width: item.width, height: item.height, size: kb(item.bytes), type: item.contentType,
      }) + note;
      link.href = item.downloadUrl;
      link.hidden = false;
    } else if (item.status === "DONE") {
      compare.hidden = true;
      link.hidden = true;
      facts.textContent = item.resultExpired ? t("item.expiredAll", { what: what }) : t("item.done");
    } else if (item.status === "FAILED" || item.status === "CANCELED") {
      const known = item.errorCode && catalogue[`code.${item.errorCode}`];
      facts.textContent = (known || item.errorMessage || item.errorCode || statusText(item.status)) + note;
    } else {
      facts.textContent = t("item.working");
    }
  }

  function render(job) {
    $("#results").hidden = false;
    const status = $("#job-status");
    status.textContent = statusText(job.status);
    status.dataset.status = job.status;
    const c = job.counts;
    const finished = c.done + c.failed + c.canceled;
    $("#job-progress").style.width = `${c.total ? (100 * finished) / c.total : 0}%`;
    const list = $("#items");
    for (const item of job.items) {
      let li = list.querySelector(`li[data-id="${item.id}"]`);
      if (!li) {
        li = $("#item-template").content.firstElementChild.cloneNode(true);
        const slider = li.querySelector(".slider");
        const before = li.querySelector(".before");
        slider.addEventListener("input", () => {
          before.style.clipPath = `inset(0 ${100 - Number(slider.value)}% 0 0)`;
        });
        list.append(li);
      }
      renderItem(item, li);
    }
    const entry = document.querySelector(`#history-list li.job[data-id="${job.id}"]`);
    if (entry) renderHistoryJob(job, entry);
    if (job.final) {
      stopWatching();
      refreshUsage();
      const failed = c.failed + c.canceled;
      say(failed
        ? t("msg.someNotDone", { done: number.format(c.done), failed: number.format(failed) })
        : t("msg.allDone", { done: number.format(c.done) }), "info");
    }
  }

  // History: the caller's jobs (GET /api/jobs, newest first, a page at a time), each with its
  // items' thumbnails, downloads, expired files, and cancel / retry.
  const HISTORY_PAGE = 5;
  let historyBefore = null;

  function when(iso) {
    return iso ? new Date(iso).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" }) : "";
  }

  function renderThumb(item) {
    const li = $("#thumb-template").content.firstElementChild.cloneNode(true);
    li.dataset.id = item.id;
    li.dataset.status = item.status;
    const img = li.querySelector("img");
    const src = item.resultUrl || item.inputUrl;
    if (src) { img.src = src; img.alt = item.name; } else img.hidden = true;
    const expired = item.resultExpired || (!item.resultUrl && item.inputExpired);
    li.dataset.expired = expired ? "yes" : "";
    li.querySelector(".expired-tag").hidden = !expired;
    li.querySelector(".thumb-name").textContent = item.name || t("item.name", { id: item.id });
    const badge = li.querySelector(".status");
    badge.textContent = statusText(item.status);
    badge.dataset.status = item.status;
    const link = li.querySelector(".download");
    if (item.downloadUrl) { link.href = item.downloadUrl; link.hidden = false; }
    return li;
  }

  function renderHistoryJob(job, li) {
    li.dataset.id = job.id;
    li.dataset.status = job.status;
    li.querySelector(".when").textContent = when(job.createdAt);
    li.querySelector(".model").textContent = job.model;
    const badge = li.querySelector(".status");
    badge.textContent = statusText(job.status);
    badge.dataset.status = job.status;
    li.querySelector(".thumbs").replaceChildren(...job.items.map(renderThumb));
    li.querySelector(".cancel").hidden = job.final;
    li.querySelector(".retry").hidden = !(job.counts.failed > 0);
  }

  function historyEntry(job) {
    const li = $("#job-template").content.firstElementChild.cloneNode(true);
    li.querySelector(".cancel").addEventListener("click", () => act(li, "cancel"));
    li.querySelector(".retry").addEventListener("click", () => act(li, "retry"));
    renderHistoryJob(job, li);
    return li;
  }

  async function act(li, action) {
    const id = li.dataset.id;
    li.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const data = await api(`/api/jobs/${id}/${action}`, { method: "POST" });
      renderHistoryJob(data.job, li);
      if (action === "retry" && !data.job.final) {
        $("#items").replaceChildren();
        render(data.job);
        watch(data.job.id);
      }
    } catch (e) {
      say(errorText(e));
    } finally {
      li.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }

  async function loadHistory(more) {
    const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (more && historyBefore) query.set("before", String(historyBefore));
    let data;
    try { data = await api(`/api/jobs?${query}`); } catch (e) { return; }
    const list = $("#history-list");
    if (!more) list.replaceChildren();
    for (const job of data.jobs) list.append(historyEntry(job));
    historyBefore = data.nextBefore;
    $("#history-more").hidden = !historyBefore;
    $("#history-empty").hidden = list.children.length > 0;
  }

  function stopWatching() {
    if (events) { events.close(); events = null; }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
  }

  function poll(id) {
    pollTimer = setTimeout(async () => {
      try { render(await api(`/api/jobs/${id}`)); } catch (e) { say(errorText(e)); }
      if (pollTimer) poll(id);
    }, 2500);
  }

  function watch(id) {
    stopWatching();
    if (!window.EventSource) { poll(id); return; }
    events = new EventSource(`/api/jobs/${id}/events`);
    events.addEventListener("job", (e) => render(JSON.parse(e.data)));
    events.addEventListener("end", () => stopWatching());
    events.onerror = () => {
      if (events && events.readyState === EventSource.CLOSED) { events = null; poll(id); }
    };
  }

  async function start() {
    if (!files.length) return;
    const params = readParams();
    if (params === null) return;
    if (!$("#prompt-row").hidden && !$("#prompt").value.trim()) {
      say(t("form.promptMissing"));
      $("#prompt").focus();
      return;
    }
    const form = new FormData();
    for (const f of files) form.append("image", f, f.name);
    form.append("model", $("#model").value);
    if ($("#preset").value) form.append("preset", $("#preset").value);
    if (!$("#prompt-row").hidden && $("#prompt").value.trim()) form.append("prompt", $("#prompt").value.trim());
    form.append("params", JSON.stringify(params));
    $("#start").disabled = true;
    say(t("msg.uploading"), "info");
    try {
      const job = await api("/api/jobs", { method: "POST", body: form });
      say(t("msg.working"), "info");
      $("#items").replaceChildren();
      render(job);
      loadHistory(false);
      if (!job.final) watch(job.id);
    } catch (e) {
      say(e.retry ? t("msg.retryIn", { message: errorText(e), seconds: e.retry }) : errorText(e));
    } finally {
      $("#start").disabled = files.length === 0;
    }
  }

  function reset() {
    stopWatching();
    files = [];
    generation += 1;
    previews.clear();
    $("#hint").hidden = true;
    $("#file-input").value = "";
    $("#chosen").replaceChildren();
    $("#items").replaceChildren();
    $("#results").hidden = true;
    $("#start").disabled = true;
    say("");
  }

  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files);
  });
  $("#file-input").addEventListener("change", (e) => choose(e.target.files));
  // A new model, parameter or preset changes what the pipeline stores: preview it again.
  function refreshPreviews() {
    if (!files.length) return;
    flagsReady.then((flags) => { if (flags.SIZE_PREVIEW_ENABLED) showPreviews(); });
  }
  $("#model").addEventListener("change", () => { togglePrompt(); refreshPreviews(); });
  $("#preset").addEventListener("change", refreshPreviews);
  $("#param-fields").addEventListener("change", refreshPreviews);
  $("#start").addEventListener("click", start);
  $("#reset").addEventListener("click", reset);
  $("#history-more").addEventListener("click", () => loadHistory(true));
  // The language switch is remembered: a cookie the server reads (and localStorage, so a
  // cleared cookie is restored on the next visit).
  $("#lang").addEventListener("change", (e) => {
    const chosen = e.target.value;
    document.cookie = `console_lang=${chosen}; path=/; max-age=31536000; samesite=lax`;
    try { localStorage.setItem("console_lang", chosen); } catch (err) { /* private mode */ }
    location.reload();
  });
  try {
    const stored = localStorage.getItem("console_lang");
    if (stored && !cookie("console_lang") && stored !== lang && $(`#lang option[value="${CSS.escape(stored)}"]`)) {
      document.cookie = `console_lang=${stored}; path=/; max-age=31536000; samesite=lax`;
      location.reload();
    }
  } catch (err) { /* storage unavailable: no restore */ }
  // Onboarding: shown on the first visit until dismissed, while ONBOARDING_ENABLED is on.
  flagsReady.then((flags) => {
    let done = true;
    try { done = Boolean(localStorage.getItem("console_tour_done")); } catch (err) { /* no tour */ }
    if (flags.ONBOARDING_ENABLED && !done) $("#tour").hidden = false;
  });
  $("#tour-close").addEventListener("click", () => {
    $("#tour").hidden = true;
    try { localStorage.setItem("console_tour_done", "1"); } catch (err) { /* private mode */ }
    $("#file-input").focus();
  });
  togglePrompt();
  refreshUsage();
  loadHistory(false);
})();
