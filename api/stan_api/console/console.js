// The Stan console: plain DOM over the documented API. The key lives in sessionStorage and travels only
// as the X-API-Key header; everything shown is written with textContent, never parsed as HTML.
"use strict";

const API = "/api/v1/stan";
const KEY = "stan.apiKey";
const POLL_MS = 5000;
const UPCOMING_MS = 30000;
const BUCKETS = 96; // quarter hours on the 24-hour timeline
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `the API answered ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

// ---- talking to the API -------------------------------------------------------------------------------

async function call(method, path, body) {
  const headers = { "X-API-Key": sessionStorage.getItem(KEY) || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) {
    signOut("That API key was refused: it is unknown, expired or revoked.");
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail);
  return data;
}

function explain(error) {
  if (!(error instanceof ApiError)) return "the API cannot be reached";
  if (Array.isArray(error.detail)) return error.detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
  if (error.status === 403) return error.detail || "this key lacks the stan:execute scope";
  if (error.status === 429) return "too many requests; slowing down";
  return error.message;
}

/** Show a 422's messages at their fields (`${prefix}-${field}-error`); what has no field goes to `general`. */
function showFieldErrors(form, prefix, error, general) {
  clearErrors(form);
  const unplaced = [];
  for (const item of Array.isArray(error.detail) ? error.detail : []) {
    const target = $(`${prefix}-${item.loc[1]}-error`);
    if (!target) { unplaced.push(`${item.loc.slice(1).join(".")}: ${item.msg}`); continue; }
    target.textContent = target.textContent ? `${target.textContent}; ${item.msg}` : item.msg;
    const input = $(`${prefix}-${item.loc[1]}`);
    if (input) input.setAttribute("aria-invalid", "true");
  }
  general.textContent = Array.isArray(error.detail) ? unplaced.join("; ") : explain(error);
  const first = form.querySelector("[aria-invalid=true]");
  if (first) first.focus();
}

function clearErrors(form) {
  for (const element of form.querySelectorAll(".error")) element.textContent = "";
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
}

function notice(text) {
  $("notice").textContent = text;
}

// ---- formatting ---------------------------------------------------------------------------------------

const sameDay = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const otherDay = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const hourOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return (date.toDateString() === new Date().toDateString() ? sameDay : otherDay).format(date);
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function timeElement(iso) {
  return iso ? element("time", { datetime: iso, title: new Date(iso).toString(), text: when(iso) }) : "—";
}

function badge(text, kind) {
  return element("span", { class: `badge ${kind || text}`, text });
}

// ---- tasks --------------------------------------------------------------------------------------------

let tasks = [];
let firstTableRender = true;

function runStrip(task) {
  const strip = element("ol", { class: "strip", "aria-label": `Recent runs of ${task.name}` });
  for (const run of [...task.recentRuns].reverse()) {
    const tip = `${run.result} · scheduled ${when(run.scheduledAt)}` +
      (run.finishedAt ? ` · finished ${when(run.finishedAt)}` : "") + (run.message ? ` · ${run.message}` : "");
    strip.append(element("li", { class: `run ${run.result}`, tabindex: 0, "data-tip": tip, "aria-label": tip }));
  }
  if (!task.recentRuns.length) strip.append(element("li", { class: "none", text: "no runs yet" }));
  return strip;
}

function cell(label, ...children) {
  return element("td", { "data-label": label }, ...children);
}

function actionButton(action, text, task, extra = {}) {
  return element("button", { type: "button", "data-action": action, "data-id": task.id,
    "aria-label": `${text} ${task.name}`, text, ...extra });
}

function taskRow(task) {
  const paused = task.status === "paused";
  return element("tr", { "data-id": task.id },
    element("th", { scope: "row", "data-label": "Name" },
      element("span", { class: "name", text: task.name }),
      element("span", { class: "muted small", text: `${task.action} · ${task.modelId}` })),
    cell("Schedule", element("code", { text: task.schedule }), element("span", { class: "muted small", text: task.scheduleText })),
    cell("Status", badge(task.status)),
    cell("Last result", task.lastResult ? badge(task.lastResult) : "—"),
    cell("Last run", timeElement(task.lastRunAt)),
    cell("Next run", timeElement(task.nextRunAt)),
    cell("Recent runs", runStrip(task)),
    element("td", { class: "row-actions", "data-label": "Actions" },
      actionButton(paused ? "resume" : "pause", paused ? "Resume" : "Pause", task),
      actionButton("run", "Run now", task),
      actionButton("edit", "Edit", task),
      actionButton("delete", "Delete", task, { class: "danger" })));
}

/** Replace only the rows whose task changed, so that focus and hover survive a refresh. */
function renderTasks(list) {
  tasks = list;
  const body = $("task-table").tBodies[0];
  const rows = new Map([...body.rows].map((row) => [row.dataset.id, row]));
  const focused = document.activeElement;
  const focusedAction = focused && body.contains(focused) ? focused.dataset.action : null;
  let previous = null;
  for (const task of list) {
    const signature = JSON.stringify(task);
    let row = rows.get(task.id);
    rows.delete(task.id);
    if (!row || row.dataset.signature !== signature) {
      const fresh = taskRow(task);
      fresh.dataset.signature = signature;
      const hadFocus = row && row.contains(focused);
      if (row) row.replaceWith(fresh); else body.append(fresh);
      row = fresh;
      if (hadFocus) (row.querySelector(`[data-action=${focusedAction}]`) || row.querySelector("button")).focus();
    }
    const expected = previous ? previous.nextElementSibling : body.firstElementChild;
    if (expected !== row) body.insertBefore(row, expected);
    previous = row;
  }
  for (const gone of rows.values()) gone.remove();
  $("task-count").textContent = `(${list.length})`;
  $("no-tasks").hidden = list.length > 0;
  $("task-table").hidden = list.length === 0;
  if (firstTableRender) {
    firstTableRender = false;
    requestAnimationFrame(() => setTimeout(() => performance.mark("stan:tasks-rendered")));
  }
}

async function onTaskAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const task = tasks.find((t) => t.id === button.dataset.id);
  if (!task) return;
  const id = encodeURIComponent(task.id);
  try {
    switch (button.dataset.action) {
      case "pause":
      case "resume":
        await call("POST", `/tasks/${id}/${button.dataset.action}`);
        notice(`${task.name}: ${button.dataset.action === "pause" ? "paused" : "resumed"}.`);
        break;
      case "run": {
        button.disabled = true;
        button.textContent = "Running…";
        const run = await call("POST", `/tasks/${id}/run`);
        notice(`${task.name}: run ${run.result}${run.message ? ` (${run.message})` : ""}.`);
        break;
      }
      case "edit":
        openTaskDialog(task);
        return;
      case "delete":
        if (!(await confirmDelete(task))) return;
        await call("DELETE", `/tasks/${id}`);
        notice(`${task.name}: deleted.`);
        $("tasks-heading").focus();
        break;
    }
  } catch (error) {
    notice(`${task.name}: ${explain(error)}.`);
  }
  await refresh(true);
}

function confirmDelete(task) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = `“${task.name}” (${task.schedule}) and its run history will be deleted.`;
  return new Promise((resolve) => {
    const close = (answer) => () => { dialog.close(); resolve(answer); };
    $("confirm-ok").onclick = close(true);
    $("confirm-cancel").onclick = close(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// ---- the task form ------------------------------------------------------------------------------------

let editing = null;
const TASK_FIELDS = ["name", "action", "schedule", "modelId", "timeZone", "concurrencyPolicy"];

async function openTaskDialog(task) {
  editing = task;
  const form = $("task-form");
  clearErrors(form);
  form.reset();
  await loadActions();
  $("task-dialog-title").textContent = task ? `Edit ${task.name}` : "New task";
  $("task-submit").textContent = task ? "Save" : "Create";
  const defaults = { action: $("task-action").options[0]?.value, timeZone: "UTC", concurrencyPolicy: "Allow" };
  for (const field of TASK_FIELDS) {
    $(`task-${field}`).value = (task ? task[field] : defaults[field]) || "";
  }
  $("task-dialog").showModal();
  $("task-name").focus();
}

async function loadActions() {
  const select = $("task-action");
  if (select.options.length) return;
  try {
    for (const action of await call("GET", "/actions")) {
      select.append(element("option", { value: action.name, text: `${action.name} (${action.kind})` }));
    }
  } catch (error) {
    notice(`Could not list the actions: ${explain(error)}.`);
  }
}

async function onTaskSubmit(event) {
  event.preventDefault();
  const form = $("task-form");
  const body = Object.fromEntries(TASK_FIELDS.map((field) => [field, $(`task-${field}`).value.trim()]));
  if (!body.timeZone) delete body.timeZone;
  try {
    if (editing) {
      await call("PUT", `/tasks/${encodeURIComponent(editing.id)}`, body);
      notice(`${body.name}: saved.`);
    } else {
      await call("POST", "/tasks", body);
      notice(`${body.name}: created.`);
    }
    $("task-dialog").close();
    await refresh(true);
  } catch (error) {
    showFieldErrors(form, "task", error, $("task-form-error"));
  }
}

// ---- heartbeat ----------------------------------------------------------------------------------------

let heartbeatFormDirty = false;

function renderHeartbeatStatus(status) {
  const health = $("health");
  const [text, kind] = status.healthy === null ? ["not run yet", "none"]
    : status.healthy ? ["healthy", "succeeded"] : ["unhealthy", "failed"];
  health.textContent = text;
  health.className = `badge ${kind}`;
  $("hb-last").replaceChildren(status.lastRunAt ? timeElement(status.lastRunAt) : "never");
  $("hb-next").replaceChildren(status.nextRunAt ? timeElement(status.nextRunAt) : "not scheduled");
  $("checks").replaceChildren(...status.results.map((result) => element("li", { class: `check ${result.status}` },
    badge(result.status), element("strong", { text: result.check }),
    element("span", { class: "message", text: result.message }),
    result.durationSeconds === null ? "" : element("span", { class: "muted small", text: `${result.durationSeconds.toFixed(2)} s` }))));
}

function renderHeartbeatSettings(settings) {
  if (heartbeatFormDirty) return;
  $("hb-enabled").checked = settings.enabled;
  $("hb-intervalMinutes").value = settings.intervalMinutes;
  const legend = $("hb-checks").querySelector("legend");
  $("hb-checks").replaceChildren(legend, ...settings.availableChecks.map((check) => element("label", { class: "inline" },
    element("input", { type: "checkbox", value: check, checked: settings.checks.includes(check) }), ` ${check}`)));
}

async function onHeartbeatSave(event) {
  event.preventDefault();
  const form = $("heartbeat-form");
  const body = {
    enabled: $("hb-enabled").checked,
    checks: [...$("hb-checks").querySelectorAll("input:checked")].map((input) => input.value),
    intervalMinutes: Number($("hb-intervalMinutes").value),
  };
  try {
    const saved = await call("PUT", "/heartbeat", body);
    heartbeatFormDirty = false;
    renderHeartbeatSettings(saved);
    clearErrors(form);
    notice("Heartbeat settings saved.");
  } catch (error) {
    showFieldErrors(form, "hb", error, $("heartbeat-form-error"));
  }
}

async function onHeartbeatRun() {
  const button = $("hb-run");
  button.disabled = true;
  button.textContent = "Running…";
  try {
    const run = await call("POST", "/heartbeat/run");
    notice(`Heartbeat: ${run.healthy ? "healthy" : `${run.issues.length} issue(s)`}.`);
  } catch (error) {
    notice(`Heartbeat: ${explain(error)}.`);
  } finally {
    button.disabled = false;
    button.textContent = "Run now";
  }
  await refresh(true);
}

// ---- upcoming -----------------------------------------------------------------------------------------

let upcomingFetchedAt = 0;

function renderUpcoming(window) {
  const start = Date.parse(window.start);
  const span = Date.parse(window.end) - start;
  const counts = new Array(BUCKETS).fill(0);
  const names = Array.from({ length: BUCKETS }, () => new Set());
  for (const run of window.runs) {
    const bucket = Math.min(BUCKETS - 1, Math.floor(((Date.parse(run.at) - start) / span) * BUCKETS));
    counts[bucket] += 1;
    names[bucket].add(run.name);
  }
  const most = Math.max(1, ...counts);
  $("timeline").replaceChildren(...counts.map((count, bucket) => {
    const bar = element("span", { class: count ? "slot busy" : "slot" });
    if (count) {
      bar.style.height = `${20 + (80 * count) / most}%`;
      bar.title = `${hourOnly.format(new Date(start + (bucket * span) / BUCKETS))}: ${count} run(s) — ${[...names[bucket]].slice(0, 5).join(", ")}`;
    }
    return bar;
  }));
  $("timeline").setAttribute("aria-label", `${window.runs.length} runs in the next 24 hours`);
  $("timeline-axis").replaceChildren(...[0, 6, 12, 18, 24].map((hour) =>
    element("span", { text: hour === 0 ? "now" : hourOnly.format(new Date(start + hour * 3600e3)) })));
  $("upcoming-list").replaceChildren(...window.runs.slice(0, 6).map((run) =>
    element("li", {}, timeElement(run.at), element("span", { text: run.name }))));
  if (!window.runs.length) $("upcoming-list").append(element("li", { class: "muted", text: "Nothing scheduled." }));
  $("upcoming-note").textContent = window.truncated.length
    ? `${window.truncated.length} task(s) run more often than the timeline shows.` : "";
}

// ---- refreshing, signing in and out -------------------------------------------------------------------

let timer = null;

async function refresh(upcomingToo = false) {
  if (!sessionStorage.getItem(KEY)) return;
  try {
    const [list, settings, status] = await Promise.all([
      call("GET", "/overview/tasks"), call("GET", "/heartbeat"), call("GET", "/overview/heartbeat")]);
    renderTasks(list);
    renderHeartbeatSettings(settings);
    renderHeartbeatStatus(status);
    if (upcomingToo || Date.now() - upcomingFetchedAt > UPCOMING_MS) {
      upcomingFetchedAt = Date.now();
      renderUpcoming(await call("GET", "/overview/upcoming?hours=24"));
    }
    $("updated").textContent = `Updated ${sameDay.format(new Date())}`;
  } catch (error) {
    if (sessionStorage.getItem(KEY)) $("updated").textContent = `Could not refresh: ${explain(error)}`;
  }
}

function poll() {
  clearTimeout(timer);
  if (document.hidden || !sessionStorage.getItem(KEY)) return;
  timer = setTimeout(async () => { await refresh(); poll(); }, POLL_MS);
}

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

async function start() {
  show(true);
  await refresh(true);
  poll();
}

function signOut(reason) {
  const wasSignedIn = sessionStorage.getItem(KEY) !== null;
  sessionStorage.removeItem(KEY);
  clearTimeout(timer);
  tasks = [];
  $("task-table").tBodies[0].replaceChildren();
  $("updated").textContent = "";
  notice("");
  show(false);
  $("api-key").value = "";
  $("api-key-error").textContent = reason || "";
  if (wasSignedIn || reason) $("api-key").focus();
}

async function onSignIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    $("api-key-error").textContent = "Enter an API key.";
    return;
  }
  sessionStorage.setItem(KEY, key);
  try {
    await call("GET", "/heartbeat");
  } catch (error) {
    if (error.status !== 401) signOut(`That key cannot be used: ${explain(error)}.`);
    return;
  }
  $("api-key").value = "";
  $("api-key-error").textContent = "";
  await start();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("task-table").addEventListener("click", onTaskAction);
  $("new-task").addEventListener("click", () => openTaskDialog(null));
  $("task-form").addEventListener("submit", onTaskSubmit);
  $("task-cancel").addEventListener("click", () => $("task-dialog").close());
  $("heartbeat-form").addEventListener("submit", onHeartbeatSave);
  $("heartbeat-form").addEventListener("input", () => { heartbeatFormDirty = true; });
  $("hb-run").addEventListener("click", onHeartbeatRun);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(timer);
    else refresh().then(poll);
  });
  if (sessionStorage.getItem(KEY)) start(); else show(false);
});
