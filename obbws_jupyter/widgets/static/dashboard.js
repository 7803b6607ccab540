// obbws-jupyter: the dashboard's header (anywidget ESM): how many connections, how many are
// hidden by their auth_token, and a form that opens a new connection. The connections
// themselves are their own ConnectionWidgets, shown below this header by the dashboard.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter(Boolean));
  return node;
}

function choices(select, values, chosen) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  if (chosen !== undefined && chosen !== null) select.value = chosen;
  select.disabled = values.length === 0;
}

function render({ model, el: host }) {
  const root = el("div", { class: "obbws-dash" });
  host.append(root);
  const title = el("span", { class: "obbws-dash-title" });
  const hidden = el("span", { class: "obbws-meta obbws-hidden" });
  const provider = el("select", { name: "provider", "aria-label": "provider" });
  const name = el("input", { name: "name", placeholder: "name (optional)", size: "12" });
  const symbol = el("input", { name: "symbol", placeholder: "symbols, e.g. btcusd,ethusd", size: "22" });
  const assetType = el("select", { name: "asset_type", "aria-label": "asset type" });
  const feed = el("select", { name: "feed", "aria-label": "feed" });
  const open = el("button", { class: "obbws-btn", "data-action": "create", text: "Open connection" });
  const message = el("span", { class: "obbws-msg", "aria-live": "polite" });
  root.append(
    el("div", { class: "obbws-header" }, title, hidden),
    el("div", { class: "obbws-form" }, provider, name, symbol, assetType, feed, open, message),
  );

  const spec = () => (model.get("providers") || []).find((p) => p.name === provider.value) || {};

  function drawProviders() {
    const list = model.get("providers") || [];
    const current = provider.value;
    choices(provider, list.map((p) => p.name), current || (list.some((p) => p.name === "demo") ? "demo" : undefined));
    drawParams();
  }

  function drawParams() {
    const p = spec();
    choices(assetType, (p.asset_type || {}).choices || [], (p.asset_type || {}).default);
    choices(feed, (p.feed || {}).choices || [], (p.feed || {}).default);
    open.title = p.description || "";
  }

  function drawCounts() {
    const n = model.get("count");
    const k = model.get("hidden");
    title.textContent = `obbws dashboard — ${n} connection${n === 1 ? "" : "s"}`;
    hidden.textContent = k ? `(${k} hidden: created with an auth_token; dashboard(auth_token=...) shows ${k === 1 ? "it" : "them"})` : "";
  }

  let req = 0;
  function submit() {
    const params = { provider: provider.value, name: name.value, symbol: symbol.value };
    if (!assetType.disabled) params.asset_type = assetType.value;
    if (!feed.disabled) params.feed = feed.value;
    req += 1;
    open.disabled = true;
    message.className = "obbws-msg obbws-ok";
    message.textContent = "opening…";
    try {
      model.send({ type: "create", params, req });
    } catch (e) {
      // the kernel is gone (restarted or shut down): this form cannot reach it any more
      open.disabled = true;
      message.className = "obbws-msg obbws-error";
      message.textContent = "the kernel is gone: run the cell again";
    }
  }

  function onCustom(msg) {
    if (!msg || msg.type !== "result") return;
    open.disabled = false;
    message.className = `obbws-msg ${msg.ok ? "obbws-ok" : "obbws-error"}`;
    message.dataset.ok = msg.ok ? "1" : "0";
    message.textContent = msg.message;
    if (msg.ok) name.value = "";
  }

  provider.addEventListener("change", drawParams);
  open.addEventListener("click", submit);
  model.on("change:providers", drawProviders);
  model.on("change:count", drawCounts);
  model.on("change:hidden", drawCounts);
  model.on("msg:custom", onCustom);
  drawProviders();
  drawCounts();
  return () => {
    model.off("change:providers", drawProviders);
    model.off("change:count", drawCounts);
    model.off("change:hidden", drawCounts);
    model.off("msg:custom", onCustom);
  };
}

export default { render };
