/* ranksearch dashboard: the list of searches, one search's Pareto front, compare, export, live.
 *
 * Plain JavaScript and plotly.js, no build step. Views are chosen by the URL hash:
 *   #/                       searches
 *   #/search/RUN_ID          one search (scatter, hypervolume, ranks heatmap, front table; with
 *                            hyperparameters also parallel coordinates and their importances)
 *   #/compare?runs=ID,ID     fronts of several searches on one plot
 * Data comes from the server's JSON endpoints (api/...); a view of a running search polls them.
 * Marks for benchmarks and tests: performance.mark("ranksearch:plot-drawn") and the attribute
 * data-plot-drawn on <body> once the scatter is on screen (likewise list-drawn, compare-drawn).
 */
"use strict";

const FRONT_COLOR = "#d62728";
const MUTED_COLOR = "#9aa5b1";
const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f"];
// Metrics drawn on a log scale by default; each search payload says which (ranksearch.objectives).
let LOG_METRICS = new Set(["params", "flops", "compression_ratio"]);
function useLogMetrics(search) {
  if (search && Array.isArray(search.log_metrics)) LOG_METRICS = new Set(search.log_metrics);
}
const PLOT_CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]};

const state = {view: 0, timers: [], config: null, cleanup: []};

// -- small helpers ------------------------------------------------------------------------------
function $(sel, root) { return (root || document).querySelector(sel); }

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path) {
  const r = await fetch(path, {cache: "no-store"});
  let body;
  try { body = await r.json(); } catch (e) { body = {error: `${r.status} ${r.statusText}`}; }
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function fmt(v, name) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (name === "params" || name === "flops") return Math.round(v).toLocaleString("en-US");
  if (name === "val_accuracy") return v.toFixed(4);
  if (name === "compression_ratio") return v.toFixed(2) + "×";
  if (Math.abs(v) >= 1000) return v.toLocaleString("en-US", {maximumFractionDigits: 1});
  return String(Number(v.toPrecision(5)));
}

function when(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleString(undefined, {year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"});
}

function mark(name) {
  try { performance.mark("ranksearch:" + name); } catch (e) { /* old browsers */ }
  window.__marks = window.__marks || {};
  window.__marks[name] = performance.now();
  document.body.setAttribute("data-" + name, "1");
}

function nextFrame() { return new Promise((resolve) => requestAnimationFrame(() => resolve())); }

function every(seconds, fn) {
  const id = setInterval(fn, Math.max(0.25, seconds) * 1000);
  state.timers.push(id);
  return id;
}

function newView(name) {
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.cleanup.forEach((fn) => fn());
  state.cleanup = [];
  for (const attr of ["data-plot-drawn", "data-list-drawn", "data-compare-drawn"]) document.body.removeAttribute(attr);
  document.body.setAttribute("data-view", name);
  state.view += 1;
  return state.view;
}

function showError(err, where) {
  const app = $("#app");
  app.replaceChildren(h("p", {class: "error", id: "error"}, `${where || "Error"}: ${err.message || err}`),
    h("p", {}, h("a", {href: "#/"}, "← back to the searches")));
}

function runUrl(ui, experimentId, runId) {
  return ui ? `${ui}/#/experiments/${experimentId}/runs/${runId}` : null;
}

function stoppedText(t, i) {
  const k = t.fidelity[i];
  return k ? `stopped at epoch ${Math.round(k)}` : "stopped early";
}

function statusBadge(search) {
  const status = search.status || "unknown";
  return h("span", {class: `badge ${status}`}, search.live ? h("span", {class: "live-dot"}) : null, status);
}

// Rank elements grouped by layer ("fc1.r0", "fc1.r1" -> fc1), keeping the space's order.
function layersOf(elements) {
  const out = [];
  const byName = new Map();
  elements.forEach((name, i) => {
    const cut = name.lastIndexOf(".");
    const layer = cut > 0 ? name.slice(0, cut) : name;
    if (!byName.has(layer)) { byName.set(layer, {layer, idx: []}); out.push(byName.get(layer)); }
    byName.get(layer).idx.push(i);
  });
  return out;
}

function ranksByLayer(ranks, layers, elements) {
  if (!ranks || !ranks.length) return [];
  if (ranks.length !== elements.length) return [`[${ranks.join(", ")}]`];
  return layers.map((l) => `${l.layer} [${l.idx.map((i) => ranks[i]).join(", ")}]`);
}

function defaultAxes(search, metricNames) {
  const objectives = search.objectives.map((o) => o[0]).filter((n) => metricNames.includes(n));
  let x = objectives[1] || metricNames.find((n) => n !== objectives[0]) || metricNames[0];
  let y = objectives[0] || metricNames[0];
  if (x === "val_accuracy" && y !== "val_accuracy") [x, y] = [y, x];  // accuracy reads best upward
  return {x, y};
}

function axisOptions(metricNames, objectives) {
  const objectiveNames = new Set(objectives.map((o) => o[0]));
  return metricNames.map((n) => ({value: n, label: objectiveNames.has(n) ? `${n} (objective)` : n}));
}

function select(id, options, value, onchange) {
  const el = h("select", {id, onchange: (e) => onchange(e.target.value)},
    options.map((o) => h("option", {value: o.value}, o.label)));
  el.value = value;
  return el;
}

// Hyperparameters: a value as the table and hover show it; blank where inactive.
function hpText(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v);
}

function log10Ticks(lo, hi) {
  // positions (log10) of 1-2-5 steps inside [lo, hi], plus the ends when they are few
  const ticks = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of [1, 2, 5]) {
      const t = e + Math.log10(m);
      if (t >= lo - 1e-9 && t <= hi + 1e-9) ticks.push(t);
    }
  }
  if (ticks.length < 3) { ticks.unshift(lo); ticks.push(hi); }
  return [...new Set(ticks)].sort((a, b) => a - b);
}

// One parallel-coordinates axis. kind: "categorical" (choices as tick labels), "log" (log10 of
// the value, ticks labelled with values) or "linear". Missing values (an inactive conditional
// hyperparameter) sit on a tick of their own below the range, labelled "inactive".
function parcoordsDim(label, values, kind, domain) {
  const present = values.filter((v) => v !== null && v !== undefined);
  let pos, range, tickvals, ticktext;
  if (kind === "categorical") {
    const choices = domain && domain.choices ? domain.choices.slice() : [...new Set(present.map(String))].sort();
    const keys = choices.map(String);
    pos = values.map((v) => (v === null || v === undefined ? null : keys.indexOf(String(v))));
    range = [0, Math.max(1, keys.length - 1)];
    tickvals = keys.map((_, k) => k);
    ticktext = keys;
  } else {
    const log = kind === "log";
    const tr = (v) => (log ? Math.log10(v) : v);
    const nums = present.map(Number).filter((v) => Number.isFinite(v) && (!log || v > 0));
    let lo = domain && domain.low !== undefined ? domain.low : Math.min(...nums);
    let hi = domain && domain.high !== undefined ? domain.high : Math.max(...nums);
    if (!nums.length) { lo = log ? 1 : 0; hi = log ? 10 : 1; }
    lo = Math.min(tr(lo), ...nums.map(tr));
    hi = Math.max(tr(hi), ...nums.map(tr));
    if (hi === lo) { hi = lo + 1; }
    pos = values.map((v) => (v === null || v === undefined || (log && v <= 0) ? null : tr(Number(v))));
    range = [lo, hi];
    tickvals = log ? log10Ticks(lo, hi) : [0, 1, 2, 3, 4].map((k) => lo + (hi - lo) * k / 4);
    ticktext = tickvals.map((t) => fmt(log ? 10 ** t : t));
  }
  if (pos.some((v) => v === null)) {
    const below = range[0] - 0.12 * (range[1] - range[0]);
    pos = pos.map((v) => (v === null ? below : v));
    range = [below, range[1]];
    tickvals = [below, ...tickvals];
    ticktext = ["inactive", ...ticktext];
  }
  return {label, values: pos, range, tickvals, ticktext};
}

function checkbox(id, label, checked, onchange) {
  const input = h("input", {type: "checkbox", id, onchange: (e) => onchange(e.target.checked)});
  input.checked = checked;
  return h("label", {for: id}, input, " ", label);
}

// -- the list of searches -------------------------------------------------------------------------
async function viewList() {
  const token = newView("list");
  const app = $("#app");
  let data;
  try {
    data = await api("api/searches");
  } catch (e) {
    return showError(e, "Cannot list searches");
  }
  if (token !== state.view) return;
  const chosen = new Set();
  const compare = h("a", {class: "button disabled", id: "compare-selected", href: "#/compare"}, "Compare selected");
  const updateCompare = () => {
    compare.classList.toggle("disabled", chosen.size < 2);
    compare.textContent = `Compare selected (${chosen.size})`;
    compare.href = `#/compare?runs=${[...chosen].join(",")}`;
  };
  const tbody = h("tbody");
  const fill = (rows) => {
    tbody.replaceChildren(...rows.map((s) => {
      const pick = h("input", {type: "checkbox", class: "pick", value: s.run_id, "aria-label": `select ${s.name}`,
        onchange: (e) => { e.target.checked ? chosen.add(s.run_id) : chosen.delete(s.run_id); updateCompare(); }});
      pick.checked = chosen.has(s.run_id);
      const trials = s.budget ? `${s.n_finished ?? "–"} / ${s.budget}` : `${s.n_finished ?? "–"}`;
      return h("tr", {"data-run-id": s.run_id},
        h("td", {}, pick),
        h("td", {}, h("a", {href: `#/search/${s.run_id}`, class: "search-link"}, s.name)),
        h("td", {}, s.experiment),
        h("td", {}, s.strategy),
        h("td", {}, statusBadge(s)),
        h("td", {class: "num"}, trials),
        h("td", {class: "num"}, fmt(s.front_size)),
        h("td", {class: "num"}, fmt(s.hypervolume)),
        h("td", {}, when(s.start_time)));
    }));
  };
  fill(data.searches);
  const table = h("table", {class: "data", id: "searches"},
    h("thead", {}, h("tr", {}, ["", "Search", "Experiment", "Strategy", "Status", "Trials done / budget",
      "Front size", "Hypervolume", "Started"].map((t) => h("th", {}, t)))), tbody);
  app.replaceChildren(
    h("h1", {}, "Searches"),
    h("div", {class: "controls"}, compare,
      h("span", {class: "hint"}, "Tick two or more searches (e.g. one per strategy) to compare their fronts.")),
    h("div", {class: "card", style: "margin-top:12px"},
      data.searches.length ? table : h("p", {class: "muted", id: "empty"},
        "No searches in this tracking store yet. Start one with `ranksearch run SPACE.yaml`.")));
  updateCompare();
  if (data.searches.some((s) => s.live)) {
    every(data.poll_interval * 2, async () => {
      try {
        const fresh = await api("api/searches");
        if (token === state.view) fill(fresh.searches);
      } catch (e) { /* keep the last list; the next poll retries */ }
    });
  }
  await nextFrame();
  mark("list-drawn");
}

// -- one search ---------------------------------------------------------------------------------
class SearchView {
  constructor(id, data, token) {
    this.id = id;
    this.token = token;
    this.selected = null;
    this.clickOpens = true;
    this.heatmapMode = "elements";
    this.setData(data);
    const axes = defaultAxes(this.search, this.data.metric_names);
    this.x = axes.x;
    this.y = axes.y;
    this.logX = LOG_METRICS.has(this.x);
    this.logY = LOG_METRICS.has(this.y);
  }

  setData(data) {
    this.data = data;
    this.search = data.search;
    useLogMetrics(this.search);
    this.ui = data.mlflow_ui;
    this.elements = this.search.elements;
    this.layers = layersOf(this.elements);
    this.hpDomains = this.search.hparams || {};
    this.hpNames = Object.keys(data.trials.hparams || {});
    const t = data.trials;
    this.byTrialId = new Map(t.trial_id.map((tid, i) => [tid, i]));
    this.hover = t.trial_id.map((_, i) => this.hoverText(i));
    if (this.selected !== null && !this.byTrialId.has(this.selected)) this.selected = null;
  }

  metric(name, i) {
    const col = this.data.trials.metrics[name];
    return col ? col[i] : null;
  }

  hoverText(i) {
    const t = this.data.trials;
    const lines = [`<b>trial ${t.trial_id[i]}</b>${t.front[i] ? " · on the front" : ""}${
      t.status[i] === "pruned" ? ` · ${stoppedText(t, i)}` : ""}`];
    for (const name of this.data.metric_names) {
      const v = this.metric(name, i);
      if (v !== null && v !== undefined) lines.push(`${name} = ${fmt(v, name)}`);
    }
    lines.push("<b>ranks</b>");
    lines.push(...ranksByLayer(t.ranks[i], this.layers, this.elements));
    const hp = this.hpNames.filter((n) => this.hp(n, i) !== "");
    if (hp.length) lines.push("<b>hyperparameters</b>", ...hp.map((n) => `${n} = ${this.hp(n, i)}`));
    return lines.join("<br>");
  }

  hp(name, i) {
    const col = (this.data.trials.hparams || {})[name];
    return col ? hpText(col[i]) : "";
  }

  frontOrder() {
    const t = this.data.trials;
    const idx = [];
    t.front.forEach((on, i) => { if (on) idx.push(i); });
    const key = (i) => this.metric(this.x, i);
    return idx.sort((a, b) => (key(a) ?? Infinity) - (key(b) ?? Infinity)
      || (this.metric(this.y, b) ?? 0) - (this.metric(this.y, a) ?? 0));
  }

  scatterTraces() {
    const t = this.data.trials;
    const n = t.trial_id.length;
    const xs = t.metrics[this.x] || [];
    const ys = t.metrics[this.y] || [];
    const usable = (i) => t.status[i] === "ok" && xs[i] !== null && ys[i] !== null && xs[i] !== undefined
      && ys[i] !== undefined && !(this.logX && xs[i] <= 0) && !(this.logY && ys[i] <= 0);
    const dominated = [];
    for (let i = 0; i < n; i++) if (!t.front[i] && usable(i)) dominated.push(i);
    // trials a scheduler stopped: shown at their partial accuracy, never part of the front
    const shownStopped = (i) => t.status[i] === "pruned" && xs[i] !== null && ys[i] !== null && xs[i] !== undefined
      && ys[i] !== undefined && !(this.logX && xs[i] <= 0) && !(this.logY && ys[i] <= 0);
    const stopped = [];
    for (let i = 0; i < n; i++) if (shownStopped(i)) stopped.push(i);
    const front = this.frontOrder().filter(usable);
    const pick = (idx) => ({x: idx.map((i) => xs[i]), y: idx.map((i) => ys[i]),
      hovertext: idx.map((i) => this.hover[i]), customdata: idx});
    const sel = this.selected !== null ? this.byTrialId.get(this.selected) : undefined;
    const selIdx = sel !== undefined && usable(sel) ? [sel] : [];
    return [
      {type: dominated.length > 4000 ? "scattergl" : "scatter", mode: "markers", name: `dominated (${dominated.length})`,
        marker: {color: MUTED_COLOR, size: 7, opacity: 0.55}, hoverinfo: "text", ...pick(dominated)},
      {type: "scatter", mode: "lines+markers", name: `Pareto front (${front.length})`,
        line: {color: FRONT_COLOR, width: 2}, marker: {color: FRONT_COLOR, size: 11, line: {color: "#fff", width: 1}},
        hoverinfo: "text", ...pick(front)},
      {type: "scatter", mode: "markers", name: "selected", showlegend: false, hoverinfo: "skip",
        marker: {size: 20, color: "rgba(0,0,0,0)", line: {color: "#102a43", width: 2.5}},
        x: selIdx.map((i) => xs[i]), y: selIdx.map((i) => ys[i])},
      // last, so the traces above keep their places
      {type: "scatter", mode: "markers", name: `stopped early (${stopped.length})`, visible: stopped.length ? true : "legendonly",
        marker: {color: MUTED_COLOR, size: 7, symbol: "x-thin", line: {color: MUTED_COLOR, width: 1.5}, opacity: 0.7},
        hoverinfo: "text", ...pick(stopped)},
    ];
  }

  scatterLayout() {
    return {
      margin: {l: 70, r: 20, t: 10, b: 55},
      xaxis: {title: {text: this.x + (this.logX ? " (log)" : "")}, type: this.logX ? "log" : "linear", gridcolor: "#eef1f4",
        zeroline: false},
      yaxis: {title: {text: this.y + (this.logY ? " (log)" : "")}, type: this.logY ? "log" : "linear", gridcolor: "#eef1f4",
        zeroline: false},
      hovermode: "closest", hoverlabel: {align: "left", bgcolor: "#fff", bordercolor: "#52606d", font: {size: 12}},
      legend: {orientation: "h", x: 0, y: 1.06}, plot_bgcolor: "#fff", paper_bgcolor: "#fff",
      uirevision: `${this.x}|${this.y}|${this.logX}|${this.logY}`,
    };
  }

  hvTraces() {
    const hist = this.data.history;
    return [
      {type: "scatter", mode: "lines", line: {shape: "hv", color: FRONT_COLOR, width: 2}, name: "hypervolume",
        x: hist.step, y: hist.hypervolume, hovertemplate: "after %{x} trials<br>hypervolume %{y:.5g}<extra></extra>"},
      {type: "scatter", mode: "lines", line: {shape: "hv", color: MUTED_COLOR, width: 1.5, dash: "dot"},
        name: "front size", yaxis: "y2", x: hist.front_size_step, y: hist.front_size,
        hovertemplate: "after %{x} trials<br>front size %{y}<extra></extra>"},
    ];
  }

  hvLayout() {
    return {
      margin: {l: 60, r: 50, t: 34, b: 45}, plot_bgcolor: "#fff", legend: {orientation: "h", x: 0, y: 1.14},
      xaxis: {title: {text: "finished trials"}, gridcolor: "#eef1f4", rangemode: "tozero"},
      yaxis: {title: {text: "hypervolume"}, gridcolor: "#eef1f4", rangemode: "tozero"},
      yaxis2: {title: {text: "front size"}, overlaying: "y", side: "right", showgrid: false, rangemode: "tozero",
        tickformat: "d"},
      uirevision: "hv",
    };
  }

  heatmapTraces() {
    const t = this.data.trials;
    const order = this.frontOrder();
    const x = order.map((i) => t.trial_id[i]);
    let rows;
    if (this.heatmapMode === "layers") {
      rows = this.layers.map((l) => ({name: l.layer, values: order.map((i) => {
        const r = t.ranks[i] || [];
        const vals = l.idx.map((k) => r[k]).filter((v) => v !== undefined);
        return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
      })}));
    } else {
      rows = this.elements.map((name, k) => ({name, values: order.map((i) => (t.ranks[i] || [])[k] ?? null)}));
    }
    return [{
      type: "heatmap", x, y: rows.map((r) => r.name), z: rows.map((r) => r.values), colorscale: "Viridis",
      colorbar: {title: {text: this.heatmapMode === "layers" ? "mean rank" : "rank"}, thickness: 12},
      hovertemplate: "trial %{x}<br>%{y}: %{z}<extra></extra>", xgap: 1, ygap: 1,
    }];
  }

  heatmapLayout() {
    const rows = this.heatmapMode === "layers" ? this.layers.length : this.elements.length;
    return {
      margin: {l: 90, r: 10, t: 34, b: 70}, height: Math.max(300, Math.min(900, 22 * rows + 110)),
      xaxis: {title: {text: `front trials, by ${this.x}`}, type: "category", tickangle: -45,
        showticklabels: this.frontOrder().length <= 40},
      yaxis: {autorange: "reversed", type: "category"}, uirevision: `${this.heatmapMode}|${this.x}`,
    };
  }

  header() {
    const s = this.search;
    const trials = s.budget ? `${s.n_finished} / ${s.budget}` : `${s.n_finished}`;
    const url = runUrl(this.ui, s.experiment_id, s.run_id);
    return h("div", {id: "search-header"},
      h("p", {class: "muted", style: "margin:0"}, h("a", {href: "#/"}, "← Searches"), ` · experiment ${s.experiment}`),
      h("h1", {id: "search-name"}, s.name, " ", statusBadge(s)),
      h("div", {class: "stats"},
        h("span", {class: "stat"}, "strategy ", h("b", {}, s.strategy)),
        h("span", {class: "stat"}, "trials done ", h("b", {id: "n-finished"}, trials)),
        s.n_running ? h("span", {class: "stat"}, "running ", h("b", {}, s.n_running)) : null,
        s.n_failed ? h("span", {class: "stat"}, "failed ", h("b", {}, s.n_failed)) : null,
        s.n_pruned ? h("span", {class: "stat"}, "pruned ", h("b", {}, s.n_pruned)) : null,
        h("span", {class: "stat"}, "front size ", h("b", {id: "front-size"}, s.front_size_local)),
        h("span", {class: "stat"}, "hypervolume ", h("b", {id: "hypervolume"}, fmt(s.hypervolume))),
        h("span", {class: "stat"}, "objectives ", h("b", {}, s.objectives.map((o) => `${o[1]} ${o[0]}`).join(", "))),
        url ? h("a", {class: "stat", href: url, target: "_blank", rel: "noopener"}, "MLflow run ↗") : null,
        h("span", {class: "stat hint", id: "live-status", hidden: !s.live}, s.live ? "live: updates while the search runs" : "")));
  }

  controls() {
    const opts = axisOptions(this.data.metric_names, this.search.objectives);
    const redraw = () => this.drawScatter().then(() => this.drawHeatmap()).then(() => this.drawTable());
    return h("div", {class: "controls"},
      h("label", {}, "x ", select("x-axis", opts, this.x, (v) => { this.x = v; this.logX = LOG_METRICS.has(v); $("#log-x").checked = this.logX; redraw(); })),
      h("label", {}, "y ", select("y-axis", opts, this.y, (v) => { this.y = v; this.logY = LOG_METRICS.has(v); $("#log-y").checked = this.logY; redraw(); })),
      checkbox("log-x", "log x", this.logX, (v) => { this.logX = v; this.drawScatter(); }),
      checkbox("log-y", "log y", this.logY, (v) => { this.logY = v; this.drawScatter(); }),
      checkbox("click-opens", "click opens the trial's MLflow run", this.clickOpens, (v) => { this.clickOpens = v; }),
      this.ui ? null : h("span", {class: "hint"}, "(no MLflow UI known: start the dashboard with --mlflow-ui URL)"));
  }

  async mount() {
    const app = $("#app");
    this.scatterEl = h("div", {id: "scatter", class: "plot"});
    this.panelEl = h("div", {id: "trial-panel", class: "card panel"});
    this.hvEl = h("div", {id: "hv-plot", class: "plot small"});
    this.heatEl = h("div", {id: "rank-heatmap", class: "plot small"});
    this.tableEl = h("div", {id: "front-table-wrap", class: "table-wrap"});
    this.parcoordsEl = h("div", {id: "parcoords", class: "plot small"});
    this.importanceEl = h("div", {id: "importance", class: "plot small"});
    app.replaceChildren(
      this.header(),
      this.controls(),
      h("div", {class: "grid main"},
        h("div", {class: "card"}, h("h2", {}, "Every trial — the Pareto front highlighted and joined"), this.scatterEl),
        this.panelEl),
      h("div", {class: "grid two"},
        h("div", {class: "card"}, h("h2", {}, "Hypervolume against finished trials"), this.hvEl),
        h("div", {class: "card"},
          h("h2", {}, "Ranks along the front ",
            select("heatmap-mode", [{value: "elements", label: "per rank element"}, {value: "layers", label: "per layer (mean)"}],
              this.heatmapMode, (v) => { this.heatmapMode = v; this.drawHeatmap(); })),
          this.heatEl)),
      ...(this.hpNames.length ? [
        h("div", {class: "card", style: "margin-top:14px"},
          h("h2", {}, "Ranks and hyperparameters against the objectives — one line per finished trial, "
            + "coloured by validation accuracy"), this.parcoordsEl),
        h("div", {class: "card", style: "margin-top:14px"},
          h("h2", {}, "Hyperparameter importance per objective"), this.importanceEl)] : []),
      h("div", {class: "card", style: "margin-top:14px"}, h("h2", {}, "The front"), this.tableEl));
    this.drawPanel();
    await this.drawScatter();
    await nextFrame();
    if (this.token !== state.view) return;
    mark("plot-drawn");
    this.scatterEl.on("plotly_click", (ev) => this.onClick(ev));
    // The rest after the first paint: the scatter is what the user waits for.
    setTimeout(async () => {
      if (this.token !== state.view) return;
      await this.drawHv();
      await this.drawHeatmap();
      this.heatEl.on("plotly_click", (ev) => { const p = ev.points && ev.points[0]; if (p) this.select(String(p.x)); });
      this.drawTable();
      await this.drawHyper();
      mark("search-complete");
    }, 0);
    const onResize = () => {
      for (const el of [this.scatterEl, this.hvEl, this.heatEl, this.parcoordsEl, this.importanceEl]) if (el.data) Plotly.Plots.resize(el);
    };
    window.addEventListener("resize", onResize);
    state.cleanup.push(() => window.removeEventListener("resize", onResize));
    if (this.search.live) this.startPolling();
  }

  drawScatter() {
    return Plotly.react(this.scatterEl, this.scatterTraces(), this.scatterLayout(), PLOT_CONFIG).then(() => {
      const front = this.data.trials.front.filter(Boolean).length;
      document.body.setAttribute("data-front-size", String(front));
      document.body.setAttribute("data-n-trials", String(this.data.trials.trial_id.length));
    });
  }

  drawHv() { return Plotly.react(this.hvEl, this.hvTraces(), this.hvLayout(), PLOT_CONFIG); }

  drawHeatmap() {
    if (!this.heatEl.isConnected) return Promise.resolve();
    const layout = this.heatmapLayout();
    this.heatEl.style.height = `${layout.height}px`;
    return Plotly.react(this.heatEl, this.heatmapTraces(), layout, PLOT_CONFIG);
  }

  drawTable() {
    const t = this.data.trials;
    const order = this.frontOrder();
    const names = this.data.metric_names.filter((n) => order.some((i) => this.metric(n, i) !== null));
    const rows = order.map((i) => {
      const tid = t.trial_id[i];
      const url = runUrl(this.ui, this.search.experiment_id, t.run_id[i]);
      return h("tr", {"data-trial-id": tid, class: tid === this.selected ? "selected" : "",
        onclick: (e) => { if (!e.target.closest("a")) this.select(tid); }},
        h("td", {}, tid),
        names.map((n) => h("td", {class: "num"}, fmt(this.metric(n, i), n))),
        h("td", {class: "ranks"}, ranksByLayer(t.ranks[i], this.layers, this.elements).join("  ")),
        this.hpNames.map((n) => h("td", {class: "hp", "data-hp": n}, this.hp(n, i))),
        h("td", {}, url ? h("a", {href: url, target: "_blank", rel: "noopener"}, "MLflow ↗") : t.run_id[i].slice(0, 8)),
        h("td", {}, h("a", {href: this.exportUrl(tid), download: "", class: "export-link"}, "rank config ⬇")));
    });
    this.tableEl.replaceChildren(h("table", {class: "data", id: "front-table"},
      h("thead", {}, h("tr", {}, h("th", {}, "trial"), names.map((n) => h("th", {}, n)), h("th", {}, "ranks"),
        this.hpNames.map((n) => h("th", {class: "hp"}, n)), h("th", {}, "run"), h("th", {}, "export"))),
      h("tbody", {}, rows)));
  }

  // -- hyperparameters: parallel coordinates and importances ------------------------------------
  async drawHyper() {
    if (!this.hpNames.length || !this.parcoordsEl.isConnected) return;
    try {
      await this.drawParcoords();
    } catch (e) {
      this.parcoordsEl.replaceChildren(h("p", {class: "error"}, `Cannot draw parallel coordinates: ${e.message || e}`));
    }
    await this.drawImportance();
  }

  parcoordsTraces() {
    const t = this.data.trials;
    const idx = [];
    t.status.forEach((s, i) => { if (s === "ok") idx.push(i); });
    const dims = [];
    this.elements.forEach((name, k) => dims.push(parcoordsDim(name, idx.map((i) => (t.ranks[i] || [])[k] ?? null), "linear")));
    for (const name of this.hpNames) {
      const d = this.hpDomains[name] || {};
      const col = idx.map((i) => t.hparams[name][i]);
      const categorical = d.type === "categorical" || Array.isArray(d.choices)
        || col.some((v) => v !== null && v !== undefined && typeof v !== "number");
      dims.push(parcoordsDim(name, col, categorical ? "categorical" : d.log ? "log" : "linear", d));
    }
    for (const [name] of this.search.objectives) {
      if (!t.metrics[name]) continue;
      const log = LOG_METRICS.has(name);
      dims.push(parcoordsDim(name + (log ? " (log)" : ""), idx.map((i) => t.metrics[name][i]), log ? "log" : "linear"));
    }
    const colorBy = t.metrics.val_accuracy ? "val_accuracy" : this.search.objectives[0][0];
    const color = idx.map((i) => (t.metrics[colorBy] || [])[i] ?? null);
    return [{type: "parcoords", dimensions: dims, labelangle: -25, labelside: "top",
      line: {color: color.map((v) => v ?? NaN), colorscale: "Viridis", showscale: true,
        colorbar: {title: {text: colorBy}, thickness: 12}}}];
  }

  drawParcoords() {
    return Plotly.react(this.parcoordsEl, this.parcoordsTraces(),
      {margin: {l: 60, r: 60, t: 90, b: 30}, height: 420, uirevision: "parcoords"}, PLOT_CONFIG);
  }

  async drawImportance() {
    let answer;
    try {
      answer = await api(`api/searches/${this.id}/importance`);
    } catch (e) {
      this.importanceEl.replaceChildren(h("p", {class: "error", id: "importance-note"}, `Cannot compute importances: ${e.message}`));
      return;
    }
    if (this.token !== state.view || !this.importanceEl.isConnected) return;
    const objectives = Object.keys(answer.importances);
    if (!objectives.length) {
      if (this.importanceEl.data) Plotly.purge(this.importanceEl);
      this.importanceEl.replaceChildren(h("p", {class: "muted", id: "importance-note"},
        `Too few finished trials for importances: ${answer.n_finished} finished ok, at least ${answer.min_trials} needed.`));
      return;
    }
    const first = answer.importances[objectives[0]];
    const params = Object.keys(first).slice(0, 20).reverse();  // the most important on top
    const traces = objectives.map((o, k) => ({type: "bar", orientation: "h", name: o, y: params,
      x: params.map((p) => answer.importances[o][p] ?? 0), marker: {color: PALETTE[k % PALETTE.length]},
      hovertemplate: `${o}<br>%{y}: %{x:.3f}<extra></extra>`}));
    this.importanceEl.querySelectorAll("#importance-note").forEach((el) => el.remove());
    await Plotly.react(this.importanceEl, traces, {
      barmode: "group", height: Math.max(300, 26 * params.length * Math.max(1, objectives.length) / 1.5 + 110),
      margin: {l: 200, r: 20, t: 30, b: 45}, legend: {orientation: "h", x: 0, y: 1.08},
      xaxis: {title: {text: `importance (${answer.evaluator}, ${answer.n_finished} finished trials)`}, rangemode: "tozero",
        gridcolor: "#eef1f4"},
      yaxis: {automargin: true}, plot_bgcolor: "#fff", uirevision: "importance",
    }, PLOT_CONFIG);
  }

  exportUrl(tid) {
    return `api/searches/${this.id}/trials/${encodeURIComponent(tid)}/rank-config`;
  }

  drawPanel() {
    const t = this.data.trials;
    const i = this.selected !== null ? this.byTrialId.get(this.selected) : undefined;
    if (i === undefined) {
      this.panelEl.replaceChildren(h("h2", {}, "Trial"),
        h("p", {class: "muted"}, "Hover a point to see its ranks and metrics; click one to choose it, open its MLflow run "
          + "and download its rank-config file."));
      return;
    }
    const tid = t.trial_id[i];
    const url = runUrl(this.ui, this.search.experiment_id, t.run_id[i]);
    const ok = t.status[i] === "ok";
    this.panelEl.replaceChildren(
      h("h2", {}, `Trial ${tid}`),
      h("div", {}, h("span", {class: `badge ${t.front[i] ? "failed" : ""}`}, t.front[i] ? "on the front" : "dominated"),
        " ", h("span", {class: "badge"}, t.status[i] === "pruned" ? stoppedText(t, i) : t.status[i])),
      h("dl", {id: "trial-metrics"}, this.data.metric_names.filter((n) => this.metric(n, i) !== null)
        .map((n) => [h("dt", {}, n), h("dd", {}, fmt(this.metric(n, i), n))])),
      h("h2", {}, "Ranks"),
      h("dl", {id: "trial-ranks", class: "ranks"}, this.layers.length && (t.ranks[i] || []).length === this.elements.length
        ? this.layers.map((l) => [h("dt", {}, l.layer), h("dd", {}, l.idx.map((k) => t.ranks[i][k]).join(", "))])
        : [h("dt", {}, "ranks"), h("dd", {}, (t.ranks[i] || []).join(", "))]),
      this.hpNames.length ? [h("h2", {}, "Hyperparameters"), h("dl", {id: "trial-hparams"},
        this.hpNames.filter((n) => this.hp(n, i) !== "").map((n) => [h("dt", {}, n), h("dd", {}, this.hp(n, i))]))] : null,
      h("div", {class: "actions"},
        h("a", {class: `button${ok ? "" : " disabled"}`, id: "export-selected", href: this.exportUrl(tid), download: ""},
          "Download rank config"),
        url ? h("a", {class: "button secondary", id: "open-run", href: url, target: "_blank", rel: "noopener"}, "Open MLflow run ↗")
          : h("span", {class: "hint"}, `MLflow run ${t.run_id[i]}. To open runs from here, start `,
            h("code", {}, (state.config && state.config.mlflow_hint) || "mlflow ui"),
            " and restart the dashboard with --mlflow-ui http://127.0.0.1:5000"),
        h("span", {class: "hint"}, "The file is what `ranksearch best -o` writes for this trial.")));
  }

  select(tid) {
    this.selected = tid;
    this.drawPanel();
    this.drawScatter();
    for (const tr of this.tableEl.querySelectorAll("tr[data-trial-id]")) tr.classList.toggle("selected", tr.dataset.trialId === tid);
  }

  onClick(ev) {
    const p = ev.points && ev.points[0];
    if (!p || p.customdata === undefined) return;
    const i = p.customdata;
    const t = this.data.trials;
    this.select(t.trial_id[i]);
    const url = runUrl(this.ui, this.search.experiment_id, t.run_id[i]);
    if (this.clickOpens && url) window.open(url, "_blank", "noopener");
  }

  startPolling() {
    const status = $("#live-status");
    const timer = every(this.data.poll_interval, async () => {
      let fresh;
      try {
        fresh = await api(`api/searches/${this.id}?since=${encodeURIComponent(this.data.version)}`);
      } catch (e) {
        if (status) status.textContent = `live: cannot reach the server (${e.message}); retrying`;
        return;
      }
      if (this.token !== state.view) return;
      const stamp = new Date().toLocaleTimeString();
      if (fresh.unchanged) {
        if (status) status.textContent = `live: checked ${stamp}`;
        return;
      }
      this.setData(fresh);
      $("#search-header").replaceWith(this.header());
      await this.drawScatter();
      await this.drawHv();
      await this.drawHeatmap();
      this.drawTable();
      this.drawPanel();
      await this.drawHyper();
      window.__liveUpdates = (window.__liveUpdates || 0) + 1;
      const live = $("#live-status");
      if (live) {
        live.hidden = false;
        live.textContent = this.search.live ? `live: updated ${stamp}` : `search ${this.search.status}: no more updates`;
      }
      if (!this.search.live) clearInterval(timer);
    });
  }
}

async function viewSearch(id) {
  const token = newView("search");
  const pre = window.__prefetch;
  window.__prefetch = null;
  let data;
  try {
    if (pre && pre.id === id) {
      const r = await pre.response;
      if (!r.ok) throw new Error(r.body.error || `HTTP ${r.status}`);
      data = r.body;
    } else {
      data = await api(`api/searches/${id}`);
    }
  } catch (e) {
    return showError(e, "Cannot open this search");
  }
  if (token !== state.view) return;
  const view = new SearchView(id, data, token);
  window.__searchView = view;
  await view.mount();
}

// -- compare ------------------------------------------------------------------------------------
async function viewCompare(runsParam) {
  const token = newView("compare");
  const app = $("#app");
  const ids = (runsParam || "").split(",").filter((s) => /^[0-9a-f]{32}$/.test(s));
  let list;
  try {
    list = (await api("api/searches")).searches;
  } catch (e) {
    return showError(e, "Cannot list searches");
  }
  if (token !== state.view) return;
  const chosen = new Set(ids);
  const picker = h("div", {class: "card", id: "compare-picker"},
    h("h2", {}, "Searches to compare"),
    h("div", {class: "controls"}, list.map((s) => {
      const box = h("input", {type: "checkbox", value: s.run_id, onchange: (e) => {
        e.target.checked ? chosen.add(s.run_id) : chosen.delete(s.run_id);
        location.hash = `#/compare?runs=${[...chosen].join(",")}`;
      }});
      box.checked = chosen.has(s.run_id);
      return h("label", {}, box, ` ${s.name} (${s.strategy})`);
    })));
  if (ids.length === 0) {
    app.replaceChildren(h("h1", {}, "Compare fronts"), picker,
      h("p", {class: "muted"}, "Choose two or more searches, for example one per strategy on the same space."));
    return;
  }
  let payloads;
  try {
    payloads = await Promise.all(ids.map((id) => api(`api/searches/${id}`)));
  } catch (e) {
    return showError(e, "Cannot read a search to compare");
  }
  if (token !== state.view) return;
  const cmp = new CompareView(payloads, token);
  window.__compareView = cmp;
  app.replaceChildren(h("h1", {}, "Compare fronts"), picker);
  await cmp.mount(app);
}

class CompareView {
  constructor(payloads, token) {
    this.token = token;
    this.payloads = payloads;
    this.showAll = false;
    const names = [];
    for (const p of payloads) for (const n of p.metric_names) if (!names.includes(n)) names.push(n);
    this.metricNames = names;
    useLogMetrics(payloads[0].search);
    const axes = defaultAxes(payloads[0].search, names);
    this.x = axes.x;
    this.y = axes.y;
    this.logX = LOG_METRICS.has(this.x);
    this.logY = LOG_METRICS.has(this.y);
  }

  traces() {
    const traces = [];
    this.payloads.forEach((p, k) => {
      const color = PALETTE[k % PALETTE.length];
      const t = p.trials;
      const view = {elements: p.search.elements, layers: layersOf(p.search.elements)};
      const xs = t.metrics[this.x] || [];
      const ys = t.metrics[this.y] || [];
      const ok = (i) => t.status[i] === "ok" && xs[i] != null && ys[i] != null && !(this.logX && xs[i] <= 0) && !(this.logY && ys[i] <= 0);
      const hover = (i) => [`<b>${p.search.name}</b> · trial ${t.trial_id[i]}`,
        ...p.metric_names.filter((n) => t.metrics[n][i] != null).map((n) => `${n} = ${fmt(t.metrics[n][i], n)}`),
        "<b>ranks</b>", ...ranksByLayer(t.ranks[i], view.layers, view.elements)].join("<br>");
      const front = [];
      const rest = [];
      t.front.forEach((on, i) => { if (ok(i)) (on ? front : rest).push(i); });
      front.sort((a, b) => xs[a] - xs[b] || ys[b] - ys[a]);
      if (this.showAll) {
        traces.push({type: rest.length > 4000 ? "scattergl" : "scatter", mode: "markers", legendgroup: p.search.run_id,
          showlegend: false, name: `${p.search.name} (all)`, marker: {color, size: 5, opacity: 0.18},
          x: rest.map((i) => xs[i]), y: rest.map((i) => ys[i]), hoverinfo: "text", hovertext: rest.map(hover)});
      }
      traces.push({type: "scatter", mode: "lines+markers", legendgroup: p.search.run_id,
        name: `${p.search.name} · ${p.search.strategy} · HV ${fmt(p.search.hypervolume)}`,
        meta: {role: "front", run_id: p.search.run_id},
        line: {color, width: 2}, marker: {color, size: 9, line: {color: "#fff", width: 1}},
        x: front.map((i) => xs[i]), y: front.map((i) => ys[i]), hoverinfo: "text", hovertext: front.map(hover)});
    });
    return traces;
  }

  layout() {
    return {
      margin: {l: 70, r: 20, t: 10, b: 55}, plot_bgcolor: "#fff", hovermode: "closest",
      hoverlabel: {align: "left", bgcolor: "#fff", font: {size: 12}},
      xaxis: {title: {text: this.x + (this.logX ? " (log)" : "")}, type: this.logX ? "log" : "linear", gridcolor: "#eef1f4"},
      yaxis: {title: {text: this.y + (this.logY ? " (log)" : "")}, type: this.logY ? "log" : "linear", gridcolor: "#eef1f4"},
      legend: {orientation: "h", x: 0, y: -0.18}, uirevision: `${this.x}|${this.y}|${this.logX}|${this.logY}`,
    };
  }

  hvTraces() {
    return this.payloads.map((p, k) => ({type: "scatter", mode: "lines", line: {shape: "hv", width: 2, color: PALETTE[k % PALETTE.length]},
      name: `${p.search.name} · ${p.search.strategy}`, x: p.history.step, y: p.history.hypervolume,
      hovertemplate: "after %{x} trials<br>hypervolume %{y:.5g}<extra>%{fullData.name}</extra>"}));
  }

  table() {
    const refs = new Set(this.payloads.map((p) => JSON.stringify(p.search.hv_reference)));
    return h("div", {},
      h("table", {class: "data", id: "compare-table"},
        h("thead", {}, h("tr", {}, ["Search", "Strategy", "Status", "Trials done", "Front size", "Hypervolume", "HV reference"]
          .map((c) => h("th", {}, c)))),
        h("tbody", {}, this.payloads.map((p, k) => h("tr", {"data-run-id": p.search.run_id},
          h("td", {}, h("span", {class: "swatch", style: `background:${PALETTE[k % PALETTE.length]}`}),
            h("a", {href: `#/search/${p.search.run_id}`}, p.search.name)),
          h("td", {}, p.search.strategy), h("td", {}, statusBadge(p.search)),
          h("td", {class: "num"}, p.search.budget ? `${p.search.n_finished} / ${p.search.budget}` : p.search.n_finished),
          h("td", {class: "num front-size"}, p.search.front_size_local),
          h("td", {class: "num hypervolume"}, fmt(p.search.hypervolume)),
          h("td", {}, JSON.stringify(p.search.hv_reference)))))),
      refs.size > 1 ? h("p", {class: "error"}, "These searches use different hypervolume reference points: their hypervolumes do not compare.") : null);
  }

  async mount(app) {
    const opts = axisOptions(this.metricNames, this.payloads[0].search.objectives);
    this.plotEl = h("div", {id: "compare-plot", class: "plot"});
    this.hvEl = h("div", {id: "compare-hv", class: "plot small"});
    this.tableEl = h("div", {class: "card", style: "margin-top:14px"}, this.table());
    const redraw = () => Plotly.react(this.plotEl, this.traces(), this.layout(), PLOT_CONFIG);
    app.append(
      h("div", {class: "controls"},
        h("label", {}, "x ", select("x-axis", opts, this.x, (v) => { this.x = v; this.logX = LOG_METRICS.has(v); $("#log-x").checked = this.logX; redraw(); })),
        h("label", {}, "y ", select("y-axis", opts, this.y, (v) => { this.y = v; this.logY = LOG_METRICS.has(v); $("#log-y").checked = this.logY; redraw(); })),
        checkbox("log-x", "log x", this.logX, (v) => { this.logX = v; redraw(); }),
        checkbox("log-y", "log y", this.logY, (v) => { this.logY = v; redraw(); }),
        checkbox("show-all", "show dominated trials", this.showAll, (v) => { this.showAll = v; redraw(); })),
      h("div", {class: "grid main"},
        h("div", {class: "card"}, h("h2", {}, "Pareto fronts"), this.plotEl),
        h("div", {class: "card"}, h("h2", {}, "Hypervolume against finished trials"), this.hvEl)),
      this.tableEl);
    await redraw();
    await nextFrame();
    if (this.token !== state.view) return;
    document.body.setAttribute("data-compare-fronts", String(this.payloads.length));
    mark("compare-drawn");
    await Plotly.react(this.hvEl, this.hvTraces(), {margin: {l: 60, r: 10, t: 34, b: 45}, plot_bgcolor: "#fff",
      legend: {orientation: "h", x: 0, y: -0.25}, xaxis: {title: {text: "finished trials"}, gridcolor: "#eef1f4"},
      yaxis: {title: {text: "hypervolume"}, gridcolor: "#eef1f4"}}, PLOT_CONFIG);
    if (this.payloads.some((p) => p.search.live)) {
      every(this.payloads[0].poll_interval, async () => {
        try {
          const fresh = await Promise.all(this.payloads.map((p) => api(`api/searches/${p.search.run_id}?since=${encodeURIComponent(p.version)}`)));
          if (this.token !== state.view) return;
          if (fresh.every((f) => f.unchanged)) return;
          this.payloads = this.payloads.map((p, k) => (fresh[k].unchanged ? p : fresh[k]));
          await redraw();
          await Plotly.react(this.hvEl, this.hvTraces(), this.hvEl.layout, PLOT_CONFIG);
          this.tableEl.replaceChildren(this.table());
        } catch (e) { /* the next poll retries */ }
      });
    }
  }
}

// -- start --------------------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/search\/([0-9a-f]{32})/);
  if (m) return viewSearch(m[1]);
  if (hash.startsWith("#/compare")) return viewCompare(new URLSearchParams(hash.split("?")[1] || "").get("runs"));
  return viewList();
}

window.addEventListener("hashchange", route);
api("api/config").then((cfg) => {
  state.config = cfg;
  const store = $("#store");
  if (store) store.textContent = cfg.tracking_uri;
}).catch(() => { /* the views report errors themselves */ });
route();
