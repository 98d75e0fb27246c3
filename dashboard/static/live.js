// The live page: renders the snapshot (embedded, then from /live/events) into the DOM as text only.
// Every value goes in with textContent: a broker message or alert text is shown, never parsed as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const fixed = (v, d) => (v === null || v === undefined || v === "") ? "" :
    (typeof v === "number" ? v.toLocaleString("en-US", {minimumFractionDigits: d, maximumFractionDigits: d}) : String(v));
  const num = (v) => fixed(v, 2);
  const qty = (v) => fixed(v, 0);
  const txt = (v) => (v === null || v === undefined) ? "" : String(v);
  // "2013-03-01T05:00:00+00:00" -> "2013-03-01 05:00:00 UTC" (the ISO text stays in data-iso / the JSON)
  const when = (v) => {
    if (typeof v !== "string" || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(v)) return txt(v);
    const zone = /(\+00:00|Z)$/.test(v) ? "UTC" : (v.match(/[+-]\d\d:\d\d$/) || [""])[0];
    return (v.slice(0, 10) + " " + v.slice(11, 19) + " " + zone).trim();
  };
  let current = null;

  function fill(tableId, rows, cols, empty, rowClass) {
    const body = $(tableId).tBodies[0];
    const out = document.createDocumentFragment();
    for (const r of rows) {
      const tr = document.createElement("tr");
      if (rowClass && rowClass(r)) tr.className = rowClass(r);
      for (const [key, fmt, cls] of cols) {
        const td = document.createElement("td");
        td.dataset.col = key;
        if (cls) td.className = cls;
        td.textContent = (fmt || txt)(r[key], r);
        tr.appendChild(td);
      }
      out.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = cols.length; td.className = "empty"; td.textContent = empty;
      tr.appendChild(td); out.appendChild(tr);
    }
    body.replaceChildren(out);
  }

  function age(iso) {
    if (!iso) return "n/a";
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    return m ? m + "m " + (s % 60) + "s" : s + "s";
  }

  function ages() {
    if (!current) return;
    $("last-bar-age").textContent = age(current.last_bar.time);
    $("status-age").textContent = current.broker.updated_at ? "updated " + age(current.broker.updated_at) + " ago" : "none";
  }

  function equity(snap) {
    const el = $("equity");
    if (!window.Plotly || !snap.equity.days.length) { el.textContent = snap.equity.days.length ? "" : "no fills yet: no P&L curve"; return; }
    const bad = snap.equity.days.filter((d) => snap.equity.shadow_ok[d] === false);
    const traces = [{x: snap.equity.days, y: snap.equity.realized, name: "live: realized P&L, cumulative", mode: "lines+markers"}];
    if (bad.length) traces.push({x: bad, y: bad.map((d) => snap.equity.realized[snap.equity.days.indexOf(d)]),
      name: "off the shadow backtest (evening report)", mode: "markers", marker: {color: "#b3261e", size: 11, symbol: "x"}});
    window.Plotly.react(el, traces, {margin: {t: 10, r: 10, b: 40, l: 60}, showlegend: true,
      legend: {orientation: "h"}}, {displaylogo: false, responsive: true});
  }

  function render(snap) {
    current = snap;
    const b = snap.broker;
    $("broker-state").textContent = b.state; $("broker-state").className = b.state;
    $("broker-text").textContent = [b.text, b.pid ? "runner pid " + b.pid : "", b.paper === false ? "LIVE account" : (b.paper ? "paper" : "")].filter(Boolean).join(" · ");
    $("last-bar").textContent = when(snap.last_bar.time) || "none";
    $("last-bar").dataset.iso = txt(snap.last_bar.time);
    $("folder").textContent = snap.folder;
    $("missing").textContent = snap.missing.length ? " (no " + snap.missing.join(", ") + ")" : "";
    const errs = $("errors"); errs.replaceChildren(...snap.errors.map((e) => { const li = document.createElement("li"); li.textContent = e; return li; }));
    const h = snap.halts;
    $("halt-file").textContent = h.file ? "HALT file: halted at " + h.file.halted_at + " by " + h.file.by + ", flatten " + h.file.flatten : "No HALT file.";
    $("halt-file").className = h.file ? "bad" : "muted";
    $("halting").textContent = h.halting ? "Halting: " + JSON.stringify(h.halting) : "";
    fill("halts", h.store, [["day"], ["scope"], ["reason"], ["at", when]], "no halt in the store");
    fill("alerts", h.alerts, [["at", when], ["event"], ["who"], ["text"], ["detail"]], "no alert in the log tail", () => "refused");
    fill("positions", snap.positions, [["strategy"], ["symbol"], ["qty", qty, "num"], ["avg_price", num, "num"],
      ["last_close", num, "num"], ["unrealized", num, "num"], ["stop", num, "num"], ["target", num, "num"], ["from"]], "flat");
    fill("orders", snap.orders, [["client_order_id"], ["strategy"], ["symbol"], ["side"], ["qty", qty, "num"],
      ["filled_qty", qty, "num"], ["type"], ["stop_price", num, "num"], ["limit_price", num, "num"], ["status"], ["submitted_at", when]], "no open order");
    const p = snap.pnl;
    $("pnl-day").textContent = txt(p.day) || "n/a"; $("pnl-realized").textContent = num(p.realized);
    $("pnl-unrealized").textContent = num(p.unrealized); $("pnl-total").textContent = num(p.total);
    $("pnl-all").textContent = num(p.all_time_realized); $("fills").textContent = txt(snap.fills);
    fill("shadow", snap.shadow, [["day"], ["ok", (v) => v ? "matched" : "DIVERGED"], ["counts", (v) => JSON.stringify(v)],
      ["pnl", num, "num"], ["summary", (v) => v.join(" ")]], "no evening report in the runs folder", (r) => r.ok ? "" : "refused");
    fill("regimes", snap.regimes, [["who"], ["today"], ["next"], ["bar_time", when]], "no decision with a regime in the log tail");
    $("entries-source").textContent = snap.entries.source + (snap.entries.sha256 ? " · sha256 " + snap.entries.sha256.slice(0, 12) : "");
    $("entries-note").textContent = txt(snap.entries.note);
    fill("entries", snap.entries.rows, [["strategy"], ["symbol"], ["regime"], ["status"], ["params"], ["oos_sharpe", num, "num"],
      ["deflated_sharpe", num, "num"], ["pbo", num, "num"], ["stability", num, "num"], ["oos_trades", qty, "num"], ["gate"]], "no active entry");
    fill("decisions", snap.decisions, [["at", when], ["event"], ["who"], ["text"], ["detail"]], "empty decision log", (r) => r.refused ? "refused" : "");
    equity(snap);
    ages();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  render(JSON.parse($("snapshot").textContent));
  setInterval(ages, 1000);
  if (window.EventSource) {
    const es = new EventSource("/live/events");
    es.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
    es.onopen = () => { $("stream-state").textContent = "live"; };
    es.onerror = () => { $("stream-state").textContent = "reconnecting"; };
  }
})();
