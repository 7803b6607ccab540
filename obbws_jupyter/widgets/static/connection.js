// obbws-jupyter: the live view of one connection (anywidget ESM; no build step, no CDN).
//
// State comes from the kernel as one `snapshot` trait per refresh (plus `log_lines` when the
// log moved); this file only draws it. The view tells the kernel whether it is on screen
// (IntersectionObserver + document.visibilityState, re-asserted every 5 s) so that the kernel
// refreshes only views somebody can see. Controls send {type: "action"} messages; the kernel
// runs the same Connection method as Python code and answers with {type: "result"}.

const BADGE = {
  idle: "idle",
  connecting: "connecting",
  running: "live",
  reconnecting: "reconnecting",
  stopped: "stopped",
  failed: "failed",
  finished: "finished",
  closed: "killed",
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

export function fmtNum(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  const digits = a >= 1000 ? 2 : a >= 1 ? 4 : 6;
  return v.toLocaleString(undefined, { maximumFractionDigits: digits });
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

export function sparkline(values, width = 90, height = 22) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "obbws-spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pts = (values || []).filter((v) => typeof v === "number");
  if (pts.length > 1) {
    const lo = Math.min(...pts);
    const hi = Math.max(...pts);
    const span = hi - lo || 1;
    const step = width / (pts.length - 1);
    const d = pts
      .map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((v - lo) / span) * (height - 4)).toFixed(1)}`)
      .join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", d);
    line.setAttribute("class", pts[pts.length - 1] >= pts[0] ? "obbws-up" : "obbws-down");
    svg.append(line);
  }
  return svg;
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
  const input = h("input", {
    class: "obbws-subscribe",
    type: "text",
    placeholder: "add symbols, e.g. solusd",
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
  const board = h("table", { class: "obbws-board" });
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

  function drawInfo() {
    const i = info();
    name.textContent = i.name || "";
    const kind = [i.asset_type, i.feed].filter(Boolean).join(" / ");
    meta.textContent = [i.provider, kind].filter(Boolean).join(" · ");
    fmtTime = timeFormat(i.tz);
    tz.textContent = i.tz ? `(times in ${i.tz})` : "";
    rowsSelect.value = String(model.get("rows"));
    tableHead.replaceChildren(h("tr", {}, ...(i.columns || []).map((c) => h("th", { text: c }))));
  }

  function drawBadge(s) {
    const state = s.state || "idle";
    let text = BADGE[state] || state;
    if (state === "reconnecting" && s.attempt) text = `reconnecting (attempt ${s.attempt})`;
    if (state === "failed" && s.last_error) badge.title = s.last_error;
    badge.textContent = text;
    badge.dataset.state = state;
    root.dataset.state = state;
    if (state === "failed") {
      banner.hidden = false;
      banner.textContent = `Stream failed: ${s.last_error || "unknown reason"} — Restart tries again.`;
    } else {
      banner.hidden = true;
    }
  }

  function drawChips(s) {
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
    const limit = s.limit ? s.limit.toLocaleString() : "∞";
    const parts = [
      stat("rate", "events/s", h("b", { text: fmtNum(Math.round(t.rate || 0)) })),
      stat("rows", "rows", h("b", { class: "obbws-rows-count", text: (s.rows_in_table || 0).toLocaleString() }), ` / ${limit}`),
      stat("received", "received", (s.received || 0).toLocaleString()),
      stat("age", "last message", h("b", { class: "obbws-age" })),
    ];
    if (s.connected_at) parts.push(stat("connected", "connected", fmtTime.format(new Date(s.connected_at))));
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
    drawAge();
  }

  function drawAge() {
    const s = model.get("snapshot") || {};
    const node = stats.querySelector(".obbws-age");
    if (!node) return;
    const running = RUNNING.has(s.state);
    const age = s.last_age === null || s.last_age === undefined ? null : s.last_age + (running ? (Date.now() - receivedAt) / 1000 : 0);
    node.textContent = fmtAge(age);
  }

  function drawControls(s) {
    const state = s.state || "idle";
    const closed = state === "closed";
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

  function drawBoard(s) {
    const t = s.tail || {};
    const quotes = t.mode === "quote";
    const head = h(
      "tr",
      {},
      h("th", { text: "symbol" }),
      h("th", { text: quotes ? "bid / ask" : t.value_field || "last" }),
      h("th", { text: "change" }),
      h("th", { text: "n" }),
      h("th", { text: "" }),
    );
    const rows = (t.symbols || []).map((x) => {
      const cls = x.change > 0 ? "obbws-up" : x.change < 0 ? "obbws-down" : "";
      const pct = typeof x.change_pct === "number" ? ` (${x.change_pct >= 0 ? "+" : ""}${x.change_pct.toFixed(2)}%)` : "";
      const change = typeof x.change === "number" ? `${x.change >= 0 ? "+" : ""}${fmtNum(x.change)}${pct}` : "";
      return h(
        "tr",
        { "data-symbol": x.symbol },
        h("td", { class: "obbws-sym", text: x.symbol }),
        h("td", { class: "obbws-num", text: quotes ? `${fmtNum(x.bid)} / ${fmtNum(x.ask)}` : fmtNum(x.last) }),
        h("td", { class: `obbws-num ${cls}`, text: change }),
        h("td", { class: "obbws-num", text: (x.count || 0).toLocaleString() }),
        h("td", {}, sparkline(x.spark)),
      );
    });
    board.replaceChildren(h("thead", {}, head), h("tbody", {}, ...rows));
  }

  function drawTable(s) {
    const t = s.tail || {};
    const i = info();
    const cols = i.columns || [];
    const types = i.types || [];
    const data = t.rows || {};
    const n = data.id ? data.id.length : 0;
    const out = [];
    for (let r = 0; r < n; r++) {
      const cells = cols.map((c, k) => {
        const v = (data[c] || [])[r];
        if (v === null || v === undefined) return h("td");
        if (types[k] === "timestamp") return h("td", { class: "obbws-time", text: fmtTime.format(new Date(v)) });
        if (types[k] === "float") return h("td", { class: "obbws-num", text: fmtNum(v) });
        return h("td", { text: String(v) });
      });
      out.push(h("tr", {}, ...cells));
    }
    tableBody.replaceChildren(...out);
    table.dataset.rows = String(n);
  }

  function drawLog() {
    const lines = model.get("log_lines") || [];
    logCount.textContent = `(${lines.length})`;
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
    const s = model.get("snapshot") || {};
    drawBadge(s);
    drawChips(s);
    drawStats(s);
    drawControls(s);
    drawBoard(s);
    drawTable(s);
  }

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
    say(`${action}…`, true);
    model.send({ type: "action", action, arg, req, view: viewId });
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
  function report(force = false) {
    const visible = onScreen && document.visibilityState === "visible";
    if (visible !== reported || force) {
      reported = visible;
      model.send({ type: "view", view: viewId, visible });
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
  const ageTimer = setInterval(drawAge, 1000);
  report();

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
  drawInfo();
  draw();
  drawLog();

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
    model.send({ type: "view", view: viewId, visible: false });
  };
}

export default { render };
