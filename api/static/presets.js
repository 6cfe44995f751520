// imageopt console: the store's custom presets (GET/POST /api/presets, PUT/DELETE
// /api/presets/{name}). Lists them with Edit and Delete, and a form to create or change one;
// every change also updates the upload form's preset choice, so a new preset can be used for a
// job at once. The page renders the panel only while CUSTOM_PRESETS_ENABLED is on, and the
// form only for a store (a guest sees the list and a note). Strings come from the page's
// catalogue through console.js (window.imageoptConsole: t, api, errorText).
"use strict";

(function () {
  const panel = document.getElementById("presets-panel");
  const shared = window.imageoptConsole;
  if (!panel || !shared) return;
  const { t, api, errorText } = shared;
  const $ = (sel) => panel.querySelector(sel);
  const editable = panel.dataset.editable === "yes";
  const form = $("#preset-form");
  const FIELDS = ["format", "fit", "width", "height", "quality", "background", "description"];
  const FLAGS = ["upscale", "lossless"];
  let editing = null; // the name being edited, or null when creating

  function say(text, kind) {
    const box = $("#preset-message");
    if (!box) return;
    box.textContent = text;
    box.className = "message" + (kind === "info" ? " info" : "");
    box.hidden = !text;
  }

  function summary(spec) {
    const parts = [spec.format.toUpperCase()];
    if (spec.width && spec.height) parts.push(`${spec.width}×${spec.height} px`);
    else if (spec.width) parts.push(t("presets.widthOnly", { width: spec.width }));
    else if (spec.height) parts.push(t("presets.heightOnly", { height: spec.height }));
    parts.push(t(`presets.fit.${spec.fit || "contain"}`));
    if (spec.format !== "png") parts.push(t("presets.qualityShort", { quality: spec.quality }));
    if (spec.description) parts.push(spec.description);
    return parts.join(" · ");
  }

  // The upload form's <select id="preset">: one option per preset, as the page renders them.
  function syncChoice(presets) {
    const select = document.getElementById("preset");
    if (!select) return;
    const chosen = select.value;
    for (const option of Array.from(select.options)) if (option.value) option.remove();
    for (const p of presets) {
      const option = document.createElement("option");
      option.value = p.name;
      option.textContent = [p.name, p.spec.format, p.spec.width ? `${p.spec.width} px` : ""]
        .filter(Boolean).join(" · ");
      select.append(option);
    }
    select.value = presets.some((p) => p.name === chosen) ? chosen : "";
  }

  function row(preset) {
    const li = document.getElementById("preset-template").content.firstElementChild.cloneNode(true);
    li.dataset.name = preset.name;
    li.querySelector(".preset-name").textContent = preset.name;
    li.querySelector(".preset-summary").textContent = summary(preset.spec);
    const edit = li.querySelector(".preset-edit");
    const remove = li.querySelector(".preset-delete");
    edit.setAttribute("aria-label", t("presets.editNamed", { name: preset.name }));
    remove.setAttribute("aria-label", t("presets.deleteNamed", { name: preset.name }));
    li.querySelector(".preset-actions").hidden = !editable;
    edit.addEventListener("click", () => startEdit(preset));
    remove.addEventListener("click", () => removePreset(preset.name, remove));
    return li;
  }

  async function load() {
    let presets;
    try {
      presets = (await api("/api/presets")).presets;
    } catch (e) {
      say(errorText(e));
      return;
    }
    const custom = presets.filter((p) => !p.builtin);
    $("#presets-list").replaceChildren(...custom.map(row));
    $("#presets-empty").hidden = custom.length > 0;
    syncChoice(presets);
  }

  function clearInvalid() {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function resetForm() {
    editing = null;
    form.reset();
    clearInvalid();
    $("#preset-name").disabled = false;
    $("#preset-form-title").textContent = t("presets.new");
    $("#preset-save").textContent = t("presets.create");
    $("#preset-cancel").hidden = true;
  }

  function startEdit(preset) {
    resetForm();
    editing = preset.name;
    $("#preset-name").value = preset.name;
    $("#preset-name").disabled = true; // a preset is renamed by creating a new one
    for (const key of FIELDS) {
      const value = preset.spec[key];
      $(`#preset-${key}`).value = value === undefined || value === null ? "" : String(value);
    }
    if (!preset.spec.fit) $("#preset-fit").value = "contain";
    for (const key of FLAGS) $(`#preset-${key}`).checked = preset.spec[key] === true;
    $("#preset-form-title").textContent = t("presets.editing", { name: preset.name });
    $("#preset-save").textContent = t("presets.save");
    $("#preset-cancel").hidden = false;
    say("");
    $("#preset-format").focus();
  }

  // The form as a spec: empty optional fields are left out (the server's defaults apply).
  function spec() {
    const out = { format: $("#preset-format").value, fit: $("#preset-fit").value };
    for (const key of ["width", "height", "quality"]) {
      const raw = $(`#preset-${key}`).value;
      if (raw !== "") out[key] = Number(raw);
    }
    for (const key of ["background", "description"]) {
      const raw = $(`#preset-${key}`).value.trim();
      if (raw) out[key] = raw;
    }
    for (const key of FLAGS) if ($(`#preset-${key}`).checked) out[key] = true;
    return out;
  }

  function labelOf(input) {
    const label = input.closest("label");
    const own = label && (label.querySelector("span") || label.firstChild);
    return (own ? own.textContent : input.name).trim();
  }

  // A field the server named (details.field: "name", "spec.width", ...), marked and focused.
  function markField(field) {
    const key = field === "name" ? "name" : field.replace(/^spec\./, "");
    const input = form.querySelector(`[name="${CSS.escape(key)}"]`);
    if (!input) return null;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return input;
  }

  async function save(event) {
    event.preventDefault();
    clearInvalid();
    for (const input of form.querySelectorAll("input, select")) {
      if (!input.checkValidity()) {
        input.setAttribute("aria-invalid", "true");
        say(t("presets.invalid", { label: labelOf(input), message: input.validationMessage }));
        input.focus();
        return;
      }
    }
    const name = editing || $("#preset-name").value.trim();
    const request = editing
      ? api(`/api/presets/${encodeURIComponent(name)}`, jsonBody("PUT", { spec: spec() }))
      : api("/api/presets", jsonBody("POST", { name: name, spec: spec() }));
    $("#preset-save").disabled = true;
    try {
      await request;
      const done = editing ? "presets.updated" : "presets.created";
      resetForm();
      await load();
      say(t(done, { name: name }), "info");
    } catch (e) {
      const field = e.details && e.details.field;
      const input = field && e.type === "validation_error" ? markField(field) : null;
      say(input ? t("presets.badField", { label: labelOf(input), message: e.message }) : errorText(e));
    } finally {
      $("#preset-save").disabled = false;
    }
  }

  function jsonBody(method, body) {
    return { method: method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }

  async function removePreset(name, button) {
    if (!window.confirm(t("presets.confirmDelete", { name: name }))) return;
    button.disabled = true;
    try {
      await api(`/api/presets/${encodeURIComponent(name)}`, { method: "DELETE" });
      if (editing === name) resetForm();
      await load();
      say(t("presets.deleted", { name: name }), "info");
      $("#preset-name").focus();
    } catch (e) {
      button.disabled = false;
      say(errorText(e));
    }
  }

  if (form) {
    form.addEventListener("submit", save);
    $("#preset-cancel").addEventListener("click", () => { resetForm(); say(""); });
  }
  load();
})();
