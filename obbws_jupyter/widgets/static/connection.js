// obbws-jupyter: the live view of one connection (anywidget ESM; no build step, no CDN).
//
// State comes from the kernel as one `snapshot` trait per refresh (plus `log_lines` when the
// log moved); this file only draws it. The view tells the kernel whether it is on screen
// (IntersectionObserver + document.visibilityState, re-asserted every 5 s) so that the kernel
// refreshes only views somebody can see. A view that is off screen does not draw either (one
// model can have several views, and the kernel learns of a scroll only when it is idle): it
// draws the current state when it comes back. Drawing updates the table and the board in
// place (rows are reused by id), so a 200-row table costs the new rows, not 200 new ones.
// Controls send {type: "action"} messages; the kernel runs the same Connection method as
// Python code and answers with {type: "result"}. When the kernel is gone (restarted, shut
// down), the view says so, disables its controls and stops talking to it.

const BADGE = {
  idle: "idle",
  connecting: "connecting",
  running: "live",
  reconnecting: "reconnecting",
  stopped: "stopped",
  failed: "failed",
  finished: "finished",
  closed: "killed",
  disconnected: "disconnected",
};
const RUNNING = new Set(["connecting", "running", "reconnecting"]);
const KEEPALIVE_MS = 5000;

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// A number with `decimals` places (the tick the kernel saw for that column or symbol), so
// 1.07987 / 1.07991 stay apart; without it, a few significant digits as before.
// One Intl.NumberFormat per style, made once: toLocaleString(undefined, options) builds a new
// formatter on every call, which made a 200-row table slow to draw.
const numberFormats = new Map();
function numberFormat(min, max) {
  const key = `${min}:${max}`;
  let format = numberFormats.get(key);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { minimumFractionDigits: min, maximumFractionDigits: max });
    numberFormats.set(key, format);
  }
  return format;
}

export function fmtNum(v, decimals) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (typeof decimals === "number") return numberFormat(decimals, decimals).format(v);
  const a = Math.abs(v);
  const digits = a >= 1000 ? 2 : a >= 1 ? 4 : 6;
  return numberFormat(0, digits).format(v);
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function timeFormat(tz) {
  const opts = {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    fractionalSecondDigits: 3,
    hourCycle: "h23",
  };
  try {
    return new Intl.DateTimeFormat(undefined, { ...opts, timeZone: tz || undefined });
  } catch (e) {
    return new Intl.DateTimeFormat(undefined, opts); // unknown tz name: browser local time
  }
}

const SVG = "http://www.w3.org/2000/svg";

export function sparkline(values, width = 90, height = 22) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "obbws-spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  setSparkline(svg, values);
  return svg;
}

// Redraw a sparkline in place: one polyline whose points change.
function setSparkline(svg, values) {
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const pts = (values || []).filter((v) => typeof v === "number");
  let line = svg.firstChild;
  if (pts.length < 2) {
    if (line) line.remove();
    return;
  }
  if (!line) {
    line = document.createElementNS(SVG, "polyline");
    svg.append(line);
  }
  const lo = Math.min(...pts);
  const hi = Math.max(...pts);
  const span = hi - lo || 1;
  const step = width / (pts.length - 1);
  const d = pts
    .map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((v - lo) / span) * (height - 4)).toFixed(1)}`)
    .join(" ");
  if (line.getAttribute("points") !== d) line.setAttribute("points", d);
  line.setAttribute("class", pts[pts.length - 1] >= pts[0] ? "obbws-up" : "obbws-down");
}

export function toast(message, level = "error") {
  let host = document.querySelector(".obbws-toasts");
  if (!host) {
    host = h("div", { class: "obbws-toasts", role: "status" });
    document.body.append(host);
  }
  const item = h(
    "div",
    { class: `obbws-toast obbws-${level}` },
    h("span", { text: message }),
    h("button", { class: "obbws-x", title: "dismiss", text: "×", onclick: () => item.remove() }),
  );
  host.append(item);
  setTimeout(() => item.remove(), 20000);
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setClass(node, cls) {
  if (node.className !== cls) node.className = cls;
}

function render({ model, el }) {
  const info = () => model.get("info") || {};
  const viewId = Math.random().toString(36).slice(2);
  const root = h("div", { class: "obbws-conn" });
  el.append(root);

  // -- skeleton ---------------------------------------------------------------------------
  const banner = h("div", { class: "obbws-banner", hidden: true });
  const name = h("span", { class: "obbws-name" });
  const meta = h("span", { class: "obbws-meta" });
  const badge = h("span", { class: "obbws-badge" });
  const chips = h("span", { class: "obbws-chips" });
  const stats = h("div", { class: "obbws-stats" });
  const sinks = h("div", { class: "obbws-sinks", hidden: true });
  const input = h("input", {
    class: "obbws-subscribe",
    type: "text",
    placeholder: "add symbols",
    "aria-label": "symbols to subscribe",
  });
  const message = h("span", { class: "obbws-msg", "aria-live": "polite" });
  const buttons = {};
  const button = (action, label, title) =>
    (buttons[action] = h("button", {
      class: "obbws-btn",
      "data-action": action,
      title,
      text: label,
      onclick: () => onAction(action),
    }));
  const controls = h(
    "div",
    { class: "obbws-controls" },
    input,
    button("subscribe", "Subscribe", "subscribe to the symbols typed on the left"),
    button("stop", "Stop", "stop the provider stream (stored rows stay)"),
    button("restart", "Restart", "reconnect with the current symbols"),
    button("start_broadcast", "Broadcast", "serve the records on a local websocket"),
    button("stop_broadcast", "Stop broadcast", "stop the broadcast server"),
    button("clear", "Clear results", "delete the stored rows (the stream goes on)"),
    button("kill", "Kill", "stop everything and delete the temporary results file"),
    message,
  );
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") onAction("subscribe");
  });
  const boardHead = h("thead");
  const boardBody = h("tbody");
  const board = h("table", { class: "obbws-board" }, boardHead, boardBody);
  const rowsSelect = h("select", { class: "obbws-rows", "aria-label": "rows shown" });
  for (const n of [10, 20, 50, 100, 200]) rowsSelect.append(h("option", { value: n, text: `${n} rows` }));
  rowsSelect.addEventListener("change", () => {
    model.set("rows", Number(rowsSelect.value));
    model.save_changes();
  });
  const tableHead = h("thead");
  const tableBody = h("tbody");
  const table = h("table", { class: "obbws-table" }, tableHead, tableBody);
  const tz = h("span", { class: "obbws-tz" });
  const logLines = h("div", { class: "obbws-log-lines" });
  const logCount = h("span");
  const logPanel = h("details", { class: "obbws-log" }, h("summary", {}, "Log ", logCount), logLines);
  root.append(
    banner,
    h("div", { class: "obbws-header" }, name, meta, badge, chips),
    stats,
    sinks,
    controls,
    h(
      "div",
      { class: "obbws-body" },
      h("div", { class: "obbws-board-wrap" }, h("div", { class: "obbws-caption", text: "Last per symbol" }), board),
      h(
        "div",
        { class: "obbws-table-wrap" },
        h("div", { class: "obbws-caption" }, "Newest rows ", rowsSelect, " ", tz),
        h("div", { class: "obbws-scroll" }, table),
      ),
    ),
    logPanel,
  );

  // -- drawing ----------------------------------------------------------------------------
  let receivedAt = Date.now();
  let fmtTime = timeFormat(info().tz);
  let req = 0;
  let killArmed = null;
  let dead = false; // the kernel side is gone (restart, shutdown): nothing can be sent
  let draws = 0;
  let drawMs = 0;
  let dirty = false; // a snapshot arrived while the view was off screen
  let rowById = new Map(); // table rows by record id, reused across snapshots
  let rowFormat = ""; // what the cached rows were formatted with (columns, decimals, tz)
  const boardRows = new Map(); // board rows by symbol
  let chipsKey = null;
  let statsKey = null;
  let sinksKey = null;

  function drawInfo() {
    const i = info();
    name.textContent = i.name || "";
    const kind = [i.asset_type, i.feed].filter(Boolean).join(" / ");
    meta.textContent = [i.provider, kind].filter(Boolean).join(" · ");
    fmtTime = timeFormat(i.tz);
    tz.textContent = i.tz ? `(times in ${i.tz})` : "";
    setPlaceholder(i.example);
    rowsSelect.value = String(model.get("rows"));
    tableHead.replaceChildren(h("tr", {}, ...(i.columns || []).map((c) => h("th", { text: c }))));
    rowFormat = ""; // re-format every row
  }

  function setPlaceholder(example) {
    const text = example ? `add symbols, e.g. ${example}` : "add symbols (comma-separated)";
    if (input.placeholder !== text) input.placeholder = text;
  }

  function drawBadge(s) {
    const state = dead ? "disconnected" : s.state || "idle";
    let text = BADGE[state] || state;
    if (state === "reconnecting" && s.attempt) text = `reconnecting (attempt ${s.attempt})`;
    if (state === "disconnected") text = "disconnected (kernel restarted)";
    badge.title = state === "failed" && s.last_error ? s.last_error : "";
    setText(badge, text);
    badge.dataset.state = state;
    root.dataset.state = state;
    if (dead) {
      banner.hidden = false;
      banner.dataset.kind = "disconnected";
      setText(banner, "This view lost its kernel (restarted or shut down): run the cell again for a live view.");
    } else if (state === "failed") {
      banner.hidden = false;
      banner.dataset.kind = "failed";
      setText(banner, `Stream failed: ${s.failure || s.last_error || "unknown reason"}`);
    } else {
      banner.hidden = true;
    }
  }

  function drawChips(s) {
    const gone = dead || s.state === "closed";
    const key = JSON.stringify([s.symbols, s.acknowledged, gone]);
    if (key === chipsKey) return;
    chipsKey = key;
    const acked = new Set(s.acknowledged || []);
    chips.replaceChildren(
      ...(s.symbols || []).map((sym) =>
        h(
          "span",
          { class: `obbws-chip${acked.has(sym) ? "" : " obbws-pending"}`, "data-symbol": sym },
          sym,
          h("button", {
            class: "obbws-x",
            title: `unsubscribe ${sym}`,
            text: "×",
            disabled: gone,
            onclick: () => send("unsubscribe", sym),
          }),
        ),
      ),
    );
  }

  function stat(key, label, ...values) {
    return h("span", { class: "obbws-stat", "data-stat": key }, h("span", { class: "obbws-label", text: label }), " ", ...values);
  }

  function drawStats(s) {
    const t = s.tail || {};
    const limit = s.limit ? fmtNum(s.limit, 0) : "∞";
    const rate = fmtNum(Math.round(t.rate || 0), 0);
    const rows = fmtNum(s.rows_in_table || 0, 0);
    const connected = s.connected_at ? fmtTime.format(new Date(s.connected_at)) : "";
    // rebuilt only when something other than the age changed (the age has its own timer)
    const key = JSON.stringify([rate, rows, limit, s.received, connected, s.broadcast, s.listeners, s.errors, s.dropped, s.recording]);
    if (key !== statsKey) {
      statsKey = key;
      const parts = [
        stat("rate", "events/s", h("b", { text: rate })),
        stat("rows", "rows", h("b", { class: "obbws-rows-count", text: rows }), ` / ${limit}`),
        stat("received", "received", fmtNum(s.received || 0, 0)),
        stat("age", "last message", h("b", { class: "obbws-age" })),
      ];
      if (connected) parts.push(stat("connected", "connected", connected));
      if (s.broadcast) {
        parts.push(
          stat(
            "broadcast",
            "broadcast",
            h("code", { class: "obbws-address", text: s.broadcast }),
            h("button", { class: "obbws-copy", title: "copy the address", text: "copy", onclick: () => copy(s.broadcast) }),
            ` ${s.listeners} listener${s.listeners === 1 ? "" : "s"}`,
          ),
        );
      }
      if (s.errors) parts.push(stat("errors", "errors", String(s.errors)));
      if (s.dropped) parts.push(stat("dropped", "dropped", String(s.dropped)));
      if (s.recording) parts.push(stat("recording", "recording to", s.recording));
      stats.replaceChildren(...parts);
    }
    drawAge();
  }

  // One line per sink (NATS, Redis, Parquet, ...), only when the connection has sinks: what
  // it is, where it writes (secrets masked by the kernel), its state and its counters.
  function drawSinks(s) {
    const list = s.sinks || [];
    const key = JSON.stringify(list);
    if (key === sinksKey) return;
    sinksKey = key;
    sinks.hidden = list.length === 0;
    sinks.replaceChildren(
      ...list.map((x) => {
        const parts = [
          h("span", { class: "obbws-label", text: x.kind }),
          " ",
          h("code", { class: "obbws-sink-url", text: x.url }),
          " ",
          h("span", { class: "obbws-sink-state", "data-state": x.state, text: x.state }),
          " ",
          stat("written", "written", h("b", { text: fmtNum(x.written || 0, 0) })),
        ];
        if (x.pending) {
          const lag = typeof x.lag === "number" ? ` (lag ${x.lag.toFixed(1)} s)` : "";
          parts.push(" ", stat("pending", "pending", `${fmtNum(x.pending, 0)}${lag}`));
        }
        if (x.dropped) parts.push(" ", stat("dropped", "dropped", h("b", { text: fmtNum(x.dropped, 0) })));
        if (x.error) parts.push(" ", h("span", { class: "obbws-sink-error", title: x.error, text: x.error }));
        return h("div", { class: "obbws-sink", "data-kind": x.kind, "data-state": x.state }, ...parts);
      }),
    );
  }

  // The age of the last message when the snapshot was built, plus the time since it arrived:
  // it keeps growing in every state (a stopped or killed stream's last message only gets
  // older), and needs no clock agreement between kernel and browser.
  function drawAge() {
    const s = model.get("snapshot") || {};
    const node = stats.querySelector(".obbws-age");
    if (!node) return;
    const age = s.last_age === null || s.last_age === undefined ? null : s.last_age + (Date.now() - receivedAt) / 1000;
    setText(node, fmtAge(age));
  }

  function drawControls(s) {
    const state = s.state || "idle";
    const closed = state === "closed" || dead;
    const running = RUNNING.has(state);
    const disabled = {
      subscribe: !running,
      stop: !running,
      restart: running,
      start_broadcast: Boolean(s.broadcast),
      stop_broadcast: !s.broadcast,
      clear: false,
      kill: false,
    };
    for (const [action, b] of Object.entries(buttons)) {
      b.disabled = closed || disabled[action] || b.dataset.busy === "1";
    }
    input.disabled = closed || !running;
  }

  function boardRow(symbol) {
    let row = boardRows.get(symbol);
    if (!row) {
      const cells = [0, 1, 2, 3].map((k) => h("td", { class: k === 0 ? "obbws-sym" : "obbws-num" }));
      const spark = sparkline([]);
      row = { tr: h("tr", { "data-symbol": symbol }, ...cells, h("td", {}, spark)), cells, spark };
      setText(cells[0], symbol);
      boardRows.set(symbol, row);
    }
    return row;
  }

  function drawBoard(s) {
    const t = s.tail || {};
    const quotes = t.mode === "quote";
    const headKey = quotes ? "quote" : t.value_field || "last";
    if (boardHead.dataset.key !== headKey) {
      boardHead.dataset.key = headKey;
      boardHead.replaceChildren(
        h(
          "tr",
          {},
          h("th", { text: "symbol" }),
          h("th", { text: quotes ? "bid / ask" : t.value_field || "last" }),
          h("th", { text: "change" }),
          h("th", { text: "n" }),
          h("th", { text: "" }),
        ),
      );
    }
    const shown = [];
    for (const x of t.symbols || []) {
      const row = boardRow(x.symbol);
      const d = x.decimals;
      const cls = x.change > 0 ? "obbws-up" : x.change < 0 ? "obbws-down" : "";
      const pct = typeof x.change_pct === "number" ? ` (${x.change_pct >= 0 ? "+" : ""}${x.change_pct.toFixed(2)}%)` : "";
      const change = typeof x.change === "number" ? `${x.change >= 0 ? "+" : ""}${fmtNum(x.change, x.change_decimals)}${pct}` : "";
      setText(row.cells[1], quotes ? `${fmtNum(x.bid, d)} / ${fmtNum(x.ask, d)}` : fmtNum(x.last, d));
      setText(row.cells[2], change);
      setClass(row.cells[2], `obbws-num ${cls}`);
      setText(row.cells[3], fmtNum(x.count || 0, 0));
      setSparkline(row.spark, x.spark);
      shown.push(row.tr);
    }
    for (const [symbol, row] of boardRows) if (!shown.includes(row.tr)) boardRows.delete(symbol);
    placeRows(boardBody, shown);
  }

  // Put `rows` (existing or new elements) in this order under `parent`, moving only what is
  // out of place, and remove the others.
  function placeRows(parent, rows) {
    let cursor = parent.firstChild;
    for (const tr of rows) {
      if (tr === cursor) cursor = cursor.nextSibling;
      else parent.insertBefore(tr, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
  }

  function tableRow(data, r, cols, types, decimals) {
    const symbol = (data.symbol || [])[r] || "";
    const cells = cols.map((c, k) => {
      const v = (data[c] || [])[r];
      if (v === null || v === undefined) return h("td");
      if (types[k] === "timestamp") return h("td", { class: "obbws-time", text: fmtTime.format(new Date(v)) });
      if (types[k] === "float") return h("td", { class: "obbws-num", text: fmtNum(v, (decimals[c] || {})[symbol]) });
      return h("td", { text: String(v) });
    });
    return h("tr", {}, ...cells);
  }

  function drawTable(s) {
    const t = s.tail || {};
    const i = info();
    const cols = i.columns || [];
    const types = i.types || [];
    const decimals = t.decimals || {};
    const data = t.rows || {};
    const ids = data.id || [];
    const format = JSON.stringify([cols, decimals, i.tz]);
    if (format !== rowFormat) {
      rowFormat = format;
      rowById = new Map(); // the tick or the columns changed: format every row again
      table.dataset.formats = String(Number(table.dataset.formats || 0) + 1);
    }
    const rows = new Map();
    const ordered = [];
    for (let r = 0; r < ids.length; r++) {
      // a row's content never changes: the same id is the same element
      const tr = rowById.get(ids[r]) || tableRow(data, r, cols, types, decimals);
      rows.set(ids[r], tr);
      ordered.push(tr);
    }
    rowById = rows;
    placeRows(tableBody, ordered);
    table.dataset.rows = String(ids.length);
  }

  function drawLog() {
    if (!isVisible()) return void (dirty = true);
    const lines = model.get("log_lines") || [];
    setText(logCount, `(${lines.length})`);
    logLines.replaceChildren(
      ...lines
        .slice()
        .reverse()
        .map((l) =>
          h(
            "div",
            { class: `obbws-log-line obbws-${l.level}` },
            h("span", { class: "obbws-time", text: fmtTime.format(new Date(l.t)) }),
            " ",
            l.msg,
          ),
        ),
    );
    if (lines.some((l) => l.level === "error" || l.level === "warning")) logPanel.classList.add("obbws-has-warnings");
  }

  function draw() {
    receivedAt = Date.now();
    if (!isVisible()) return void (dirty = true); // drawn when the view comes back
    dirty = false;
    const started = performance.now();
    const s = model.get("snapshot") || {};
    drawBadge(s);
    drawChips(s);
    drawStats(s);
    drawSinks(s);
    drawControls(s);
    if (s.example !== undefined) setPlaceholder(s.example);
    drawBoard(s);
    drawTable(s);
    // read by the browser benchmark and tests: how many draws, and their script time (ms)
    drawMs += performance.now() - started;
    root.dataset.draws = String(++draws);
    root.dataset.drawMs = drawMs.toFixed(1);
  }

  // -- talking to the kernel ----------------------------------------------------------------
  // Every message goes through here: a kernel that is gone turns the view "disconnected"
  // instead of throwing ("Cannot send") from a timer or a click forever.
  function post(content) {
    if (dead) return false;
    try {
      model.send(content);
      return true;
    } catch (e) {
      disconnected();
      return false;
    }
  }

  function disconnected() {
    if (dead) return;
    dead = true;
    clearInterval(keepalive);
    clearInterval(ageTimer);
    if (observer) observer.disconnect();
    document.removeEventListener("visibilitychange", onVisibility);
    for (const b of Object.values(buttons)) delete b.dataset.busy;
    chipsKey = null;
    say("the kernel is gone: run the cell again for a live view", false);
    const s = model.get("snapshot") || {};
    drawBadge(s);
    drawChips(s);
    drawControls(s);
  }

  // ipywidgets marks a view whose comm died (kernel restart) with this class
  const onCommLive = () => {
    if (el.classList.contains("jupyter-widgets-disconnected")) disconnected();
  };

  // -- controls ---------------------------------------------------------------------------
  function say(text, ok) {
    message.textContent = text;
    message.className = `obbws-msg ${ok ? "obbws-ok" : "obbws-error"}`;
    message.dataset.ok = ok ? "1" : "0";
  }

  function send(action, arg = "") {
    req += 1;
    const b = buttons[action];
    if (b) {
      b.dataset.busy = "1";
      b.disabled = true;
    }
    say(`${action.replace("_", " ")}…`, true);
    if (!post({ type: "action", action, arg, req, view: viewId }) && b) delete b.dataset.busy;
  }

  function onAction(action) {
    if (action === "subscribe") {
      const symbols = input.value.trim();
      if (!symbols) return say("type one or more symbols first (comma-separated)", false);
      send("subscribe", symbols);
      return;
    }
    if (action === "kill") {
      const b = buttons.kill;
      if (!killArmed) {
        b.textContent = "Confirm kill?";
        b.classList.add("obbws-armed");
        killArmed = setTimeout(() => {
          killArmed = null;
          b.textContent = "Kill";
          b.classList.remove("obbws-armed");
        }, 4000);
        return;
      }
      clearTimeout(killArmed);
      killArmed = null;
      b.textContent = "Kill";
      b.classList.remove("obbws-armed");
    }
    send(action);
  }

  function onResult(msg) {
    const b = buttons[msg.action];
    if (b) delete b.dataset.busy;
    say(msg.message, msg.ok);
    if (msg.ok && msg.action === "subscribe") input.value = "";
    drawControls(model.get("snapshot") || {});
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      say(`copied ${text}`, true);
    } catch (e) {
      const range = document.createRange();
      const node = stats.querySelector(".obbws-address");
      if (node) {
        range.selectNodeContents(node);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
      say("select the address and copy it (clipboard not available here)", false);
    }
  }

  function onCustom(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "result") onResult(msg);
    else if (msg.type === "alert") toast(msg.message, msg.level || "error");
  }

  // -- visibility: the kernel refreshes only views that are on screen ------------------------
  let onScreen = false;
  let reported = null;
  function isVisible() {
    return onScreen && document.visibilityState === "visible";
  }
  function report(force = false) {
    const visible = isVisible();
    if (visible && dirty) {
      draw(); // the newest state this view has, at once; the kernel sends a fresher one
      drawLog();
    }
    if (visible !== reported || force) {
      reported = visible;
      post({ type: "view", view: viewId, visible });
    }
  }
  const observer = typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
        onScreen = entries.some((e) => e.isIntersecting);
        report();
      })
    : null;
  if (observer) observer.observe(root);
  else onScreen = true;
  const onVisibility = () => report();
  document.addEventListener("visibilitychange", onVisibility);
  const keepalive = setInterval(() => reported && report(true), KEEPALIVE_MS);
  const ageTimer = setInterval(() => isVisible() && drawAge(), 1000);

  model.on("change:snapshot", draw);
  model.on("change:log_lines", drawLog);
  const onInfo = () => {
    drawInfo();
    draw();
  };
  const onRows = () => (rowsSelect.value = String(model.get("rows")));
  model.on("change:info", onInfo);
  model.on("change:rows", onRows);
  model.on("msg:custom", onCustom);
  model.on("comm_live_update", onCommLive);
  drawInfo();
  // the first draw happens whatever the visibility (the observer reports shortly after)
  onScreen = true;
  draw();
  drawLog();
  onScreen = !observer;
  onCommLive();
  report();

  return () => {
    if (observer) observer.disconnect();
    document.removeEventListener("visibilitychange", onVisibility);
    clearInterval(keepalive);
    clearInterval(ageTimer);
    model.off("change:snapshot", draw);
    model.off("change:log_lines", drawLog);
    model.off("change:info", onInfo);
    model.off("change:rows", onRows);
    model.off("msg:custom", onCustom);
    model.off("comm_live_update", onCommLive);
    post({ type: "view", view: viewId, visible: false });
  };
}

export default { render };
