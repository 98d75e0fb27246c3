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

  // plotly reads a few tags in hover text: a strategy or symbol from a report file goes in as text
  const plain = (v) => txt(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  function equity(snap) {
    const el = $("equity"), e = snap.equity, today = e.today || {};
    $("pnl-equity").textContent = today.pnl === null || today.pnl === undefined ? "n/a" : num(today.pnl);
    $("pnl-equity-base").textContent = today.pnl === null || today.pnl === undefined ? txt(today.note) :
      "(" + num(today.now) + " at " + when(today.now_at) + " - " + num(today.base) + " at " + when(today.base_at) + ", the last mark before the open)";
    $("equity-caption").textContent = e.shadow_line ? e.caption : "";
    $("shadow-note").textContent = txt(e.shadow_note);
    const marks = e.marks || {x: []};
    if (!window.Plotly) { el.textContent = "plotly did not load"; return; }
    let traces;
    if (marks.x.length) {
      traces = [{x: marks.x, y: marks.equity, name: "live equity (the runner's marks)", mode: "lines+markers",
        marker: {size: 4}, line: {color: "#1f5fa8"}}];
      if (e.shadow_line) traces.push({x: e.shadow_line.x, y: e.shadow_line.equity, name: "shadow: fills at the backtest's prices",
        mode: "lines", line: {color: "#7a4fb0", dash: "dash"}, text: e.shadow_line.slippage.map((v) => "slippage so far $" + num(v)),
        hoverinfo: "x+y+text"});
      for (const [status, color, symbol] of [["missed", "#b3261e", "circle-open"], ["extra", "#c77700", "x"]]) {
        const ev = e.events.filter((v) => v.status === status);
        if (ev.length) traces.push({x: ev.map((v) => v.x), y: ev.map((v) => v.equity), name: status + " fills (evening report)",
          mode: "markers", marker: {color: color, size: 12, symbol: symbol, line: {width: 2, color: color}},
          text: ev.map((v) => plain(v.text)), hoverinfo: "text"});
      }
    } else if (e.days.length) {  // a store from before equity marks: realized P&L by session
      traces = [{x: e.days, y: e.realized, name: "live: realized P&L, cumulative", mode: "lines+markers"}];
    } else { el.textContent = "no equity mark and no fill yet: no curve"; return; }
    window.Plotly.react(el, traces, {margin: {t: 10, r: 10, b: 40, l: 70}, showlegend: true,
      legend: {orientation: "h"}, yaxis: {title: {text: marks.x.length ? "equity $" : "realized P&L $"}}},
      {displaylogo: false, responsive: true});
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
