/* wtflow's run report: draws the data embedded in this page (no network, no libraries). */
(function () {
  "use strict";
  var began = performance.now();
  var DATA = JSON.parse(document.getElementById("wtflow-data").textContent);
  var RUN = DATA.run;
  var NODES = DATA.nodes;
  var CRIT = DATA.critical;
  var SVGNS = "http" + "://www.w3.org/2000/svg";
  var STATUSES = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "cached", "reused", "running", "pending"];
  var STREAMS = ["stdout", "stderr"];
  // Each log's text is a block of its own, "wtflow-log-<node>-<stream>", as written but for JSON
  // escapes of what the HTML parser would change ("<", CR, NUL) and of the backslash.
  var UNESCAPED = { "\\\\": "\\", "\\u003c": "<", "\\r": "\r", "\\u0000": "\0" };
  NODES.forEach(function (node, i) {
    STREAMS.forEach(function (stream) {
      var log = node.logs[stream];
      if (!log) return;
      var text = document.getElementById("wtflow-log-" + i + "-" + stream).textContent;
      log.text = text.indexOf("\\") < 0 ? text : text.replace(/\\(?:\\|u003c|r|u0000)/g, function (e) { return UNESCAPED[e]; });
    });
  });
  var critStep = new Map();
  CRIT.steps.forEach(function (step, k) { critStep.set(step[0], k); });
  var total = Math.max(RUN.duration || 0, 0.001);
  NODES.forEach(function (node) {
    node.tries.forEach(function (t) { if (t[1] != null) total = Math.max(total, t[1]); else if (t[0] != null) total = Math.max(total, t[0]); });
  });

  // -- small helpers ----------------------------------------------------------------------

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        var value = attrs[key];
        if (value == null || value === false) continue;
        if (key === "text") e.textContent = value;
        else if (key === "cls") e.className = value;
        else if (key.slice(0, 2) === "on") e.addEventListener(key.slice(2), value);
        else e.setAttribute(key, value === true ? "" : value);
      }
    }
    if (children) children.forEach(function (child) { if (child != null) e.append(child); });
    return e;
  }
  function sv(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var key in attrs) if (attrs[key] != null) e.setAttribute(key, attrs[key]);
    return e;
  }
  function esc(text) {
    return text.replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; });
  }
  function label(status) { return String(status || "").replace("_", " "); }
  function dur(s) {
    if (s == null || isNaN(s)) return "–";
    if (s < 0) s = 0;
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.round(s - m * 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function offset(s) { return s == null ? "–" : "+" + dur(s); }
  function clock(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }
  function size(n) {
    if (n == null) return "";
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function share(seconds) { return CRIT.total > 0 ? (100 * seconds / CRIT.total) : 0; }
  function pct(value) { return (value < 10 ? value.toFixed(1) : value.toFixed(0)) + "%"; }
  function nodeDuration(node) { return node.start != null && node.end != null ? node.end - node.start : null; }
  function truncate(text, chars) { return text.length > chars ? text.slice(0, Math.max(chars - 1, 1)) + "…" : text; }

  // -- ANSI colours: SGR codes become styled spans; other control sequences are dropped ----

  var PALETTE = ["#484f58", "#ff7b72", "#3fb950", "#d29922", "#58a6ff", "#bc8cff", "#39c5cf", "#b1bac4",
    "#6e7681", "#ffa198", "#56d364", "#e3b341", "#79c0ff", "#d2a8ff", "#56d4dd", "#ffffff"];
  var ESCAPES = /\x1b\[([0-9;:?<=>]*)[ -\/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
  var CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;
  function color256(n) {
    if (n < 16) return PALETTE[n];
    if (n < 232) {
      n -= 16;
      var level = function (v) { return v ? 55 + v * 40 : 0; };
      return "rgb(" + level(Math.floor(n / 36)) + "," + level(Math.floor(n / 6) % 6) + "," + level(n % 6) + ")";
    }
    var gray = 8 + (n - 232) * 10;
    return "rgb(" + gray + "," + gray + "," + gray + ")";
  }
  function freshStyle() { return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false }; }
  function sgr(params, st) {
    var codes = params === "" ? [0] : params.split(/[;:]/).map(function (p) { return p === "" ? 0 : Number(p); });
    for (var k = 0; k < codes.length; k++) {
      var c = codes[k];
      if (c === 0) Object.assign(st, freshStyle());
      else if (c === 1) st.bold = true;
      else if (c === 2) st.dim = true;
      else if (c === 3) st.italic = true;
      else if (c === 4) st.underline = true;
      else if (c === 7) st.inverse = true;
      else if (c === 9) st.strike = true;
      else if (c === 22) { st.bold = false; st.dim = false; }
      else if (c === 23) st.italic = false;
      else if (c === 24) st.underline = false;
      else if (c === 27) st.inverse = false;
      else if (c === 29) st.strike = false;
      else if (c >= 30 && c <= 37) st.fg = PALETTE[c - 30];
      else if (c >= 90 && c <= 97) st.fg = PALETTE[c - 82];
      else if (c >= 40 && c <= 47) st.bg = PALETTE[c - 40];
      else if (c >= 100 && c <= 107) st.bg = PALETTE[c - 92];
      else if (c === 39) st.fg = null;
      else if (c === 49) st.bg = null;
      else if (c === 38 || c === 48) {
        var colour = null;
        if (codes[k + 1] === 5 && k + 2 < codes.length) { colour = color256(codes[k + 2] & 255); k += 2; }
        else if (codes[k + 1] === 2 && k + 4 < codes.length) {
          colour = "rgb(" + (codes[k + 2] & 255) + "," + (codes[k + 3] & 255) + "," + (codes[k + 4] & 255) + ")"; k += 4;
        }
        if (c === 38) st.fg = colour; else st.bg = colour;
      }
    }
  }
  function styled(text, st) {
    text = text.replace(CONTROLS, function (c) { return c === "\t" ? c : ""; });
    if (!text) return "";
    var fg = st.fg, bg = st.bg;
    if (st.inverse) { fg = st.bg || "var(--log-bg)"; bg = st.fg || "var(--log-fg)"; }
    var css = [];
    if (fg) css.push("color:" + fg);
    if (bg) css.push("background:" + bg);
    if (st.bold) css.push("font-weight:700");
    if (st.dim) css.push("opacity:.7");
    if (st.italic) css.push("font-style:italic");
    if (st.underline || st.strike) css.push("text-decoration:" + (st.underline ? "underline " : "") + (st.strike ? "line-through" : ""));
    return css.length ? '<span class="ansi" style="' + css.join(";") + '">' + esc(text) + "</span>" : esc(text);
  }
  function splitLines(text) {
    text = text.replace(/\r\n/g, "\n");
    if (text.slice(-1) === "\n") text = text.slice(0, -1);
    return text === "" ? [] : text.split("\n");
  }
  // A line's HTML; a carriage return starts the line over (a progress bar shows its last state).
  function ansiLine(line, st) {
    var parts = line.split("\r");
    var keep = parts.length - 1;
    while (keep > 0 && parts[keep] === "") keep--;
    var html = "";
    parts.forEach(function (part, k) {
      var out = "", last = 0, m;
      ESCAPES.lastIndex = 0;
      while ((m = ESCAPES.exec(part)) !== null) {
        if (m[0] === "") { ESCAPES.lastIndex++; continue; }
        out += styled(part.slice(last, m.index), st);
        last = ESCAPES.lastIndex;
        if (m[2] === "m") sgr(m[1], st);
      }
      out += styled(part.slice(last), st);
      if (k === keep) html = out;
    });
    return html;
  }
  function ansiHtmlLines(text) {
    var st = freshStyle();
    return splitLines(text).map(function (line) { return ansiLine(line, st); });
  }
  var plainCache = new Map();
  function plainLines(i, stream) {
    var key = i + ":" + stream;
    if (!plainCache.has(key)) {
      var log = NODES[i].logs[stream];
      plainCache.set(key, log ? splitLines(log.text).map(function (line) {
        var parts = line.replace(ESCAPES, "").replace(CONTROLS, function (c) { return c === "\t" || c === "\r" ? c : ""; }).split("\r");
        var keep = parts.length - 1;
        while (keep > 0 && parts[keep] === "") keep--;
        return parts[keep];
      }) : []);
    }
    return plainCache.get(key);
  }

  // -- header -------------------------------------------------------------------------------

  function counts() {
    var found = {};
    NODES.forEach(function (node) { if (!node.group && !node.hidden) found[node.status] = (found[node.status] || 0) + 1; });
    return found;
  }
  function renderHeader() {
    var header = document.getElementById("header");
    var facts = [
      ["run", "Run", RUN.id],
      ["status", "Status", label(RUN.status) + (RUN.exit_code != null ? " (exit code " + RUN.exit_code + ")" : "")],
      ["started", "Started", clock(RUN.started), RUN.started],
      ["duration", "Duration", RUN.finished ? dur(RUN.duration) : "did not finish"],
      ["host", "Host", RUN.host + (RUN.pid != null ? " (pid " + RUN.pid + ")" : "")],
      ["commit", "Commit", RUN.commit ? RUN.commit.slice(0, 12) : "–", RUN.commit || "not recorded"],
    ];
    var found = counts();
    var chips = STATUSES.filter(function (s) { return found[s]; }).map(function (s) {
      return el("button", {
        type: "button", cls: "chip", "data-status": s, title: "Show the " + label(s) + " nodes",
        onclick: function () { setStatusFilter(s); document.getElementById("nodes-section").scrollIntoView(); },
      }, [el("span", { cls: "dot s-" + s }), found[s] + " " + label(s)]);
    });
    var parts = [
      el("h1", null, [RUN.workflow || "(unnamed workflow)", el("span", { cls: "badge s-" + RUN.status, id: "run-status", text: label(RUN.status) })]),
      el("dl", { cls: "facts" }, facts.map(function (f) {
        return el("div", { cls: "fact-" + f[0] }, [el("dt", { text: f[1] }), el("dd", { "data-fact": f[0], text: f[2], title: f[3] || f[2] })]);
      })),
    ];
    if (RUN.error) parts.push(el("div", { cls: "run-error", text: RUN.error }));
    parts.push(el("div", { cls: "chips" }, chips));
    header.replaceChildren.apply(header, parts);
    document.getElementById("footer").textContent = "Made by wtflow on " + clock(DATA.generated) +
      ". Logs show the last part of each stream; their links open the whole files, relative to this page: keep it beside the run's files.";
  }

  // -- timeline -----------------------------------------------------------------------------

  var layout = NODES.filter(function (n) { return !n.group; }).length > 60 ? "lanes" : "rows";
  var zoom = 1;
  var selected = null;
  var tooltip = document.getElementById("tooltip");

  function bars() {
    var found = [];
    NODES.forEach(function (node, i) {
      if (node.group) return;
      node.tries.forEach(function (t, k) {
        if (t[0] == null) return;
        found.push({ i: i, k: k, number: k + 1, start: t[0], end: t[1] != null ? t[1] : total, status: t[2], exit: t[3], last: k === node.tries.length - 1 });
      });
    });
    return found;
  }
  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  function tickLabel(t, step) {
    if (t === 0) return "0";
    if (step < 1) return (t * 1000).toFixed(0) + " ms";
    if (t < 60 || step < 60) return t.toFixed(step < 1 ? 1 : 0) + " s";
    return dur(t);
  }
  function renderTimeline() {
    var box = document.getElementById("timeline");
    var items = bars();
    var rows = layout === "rows";
    var rowOf = new Map();
    var count = 0;
    if (rows) {
      var order = NODES.map(function (n, i) { return i; }).filter(function (i) {
        var n = NODES[i];
        return !n.group && !n.hidden && (n.tries.length || n.status === "skipped");
      });
      order.sort(function (a, b) {
        var sa = NODES[a].start != null ? NODES[a].start : (NODES[a].end != null ? NODES[a].end : Infinity);
        var sb = NODES[b].start != null ? NODES[b].start : (NODES[b].end != null ? NODES[b].end : Infinity);
        return sa - sb || a - b;
      });
      order.forEach(function (i, r) { rowOf.set(i, r); });
      items.forEach(function (b) { b.row = rowOf.get(b.i); });
      count = order.length;
    } else {
      var lanes = [];
      items.slice().sort(function (a, b) { return a.start - b.start || a.i - b.i; }).forEach(function (b) {
        var lane = lanes.findIndex(function (end) { return end <= b.start + 1e-6; });
        if (lane < 0) { lane = lanes.length; lanes.push(0); }
        lanes[lane] = b.end;
        b.row = lane;
      });
      count = lanes.length;
    }
    var longest = 0;
    rowOf.forEach(function (r, i) { longest = Math.max(longest, NODES[i].name.length); });
    var labelW = rows ? Math.min(280, Math.max(110, longest * 7 + 24)) : 64;
    var avail = Math.max(box.clientWidth - 2, 640);
    var width = Math.round((avail - labelW - 16) * zoom) + labelW + 16;
    var rowH = rows ? 20 : 24, barH = rows ? 14 : 18, top = 26;
    var height = top + Math.max(count, 1) * rowH + 10;
    var span = width - labelW - 16;
    function x(t) { return labelW + (t / total) * span; }
    var svg = sv("svg", { width: width, height: height, id: "timeline-svg", role: "img", "aria-label": "Timeline of the run's nodes" });
    var axis = sv("g", { "class": "axis" });
    var step = niceStep(total / Math.max(span / 90, 1));
    for (var t = 0; t <= total + 1e-9; t += step) {
      axis.append(sv("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height }));
      var text = sv("text", { x: x(t) + 3, y: 14 });
      text.textContent = tickLabel(t, step);
      axis.append(text);
    }
    if (!rows) {
      for (var lane = 0; lane < count; lane++) {
        var laneLabel = sv("text", { x: 6, y: top + lane * rowH + rowH / 2 + 4, "class": "lane-label" });
        laneLabel.textContent = "lane " + (lane + 1);
        axis.append(laneLabel);
      }
    }
    svg.append(axis);
    if (rows) {
      rowOf.forEach(function (r, i) {
        var node = NODES[i];
        var name = sv("text", { x: 6, y: top + r * rowH + rowH / 2 + 4, "class": "row-label" + (critStep.has(i) ? " critical" : ""), "data-node": i });
        name.textContent = truncate(node.name, Math.floor((labelW - 12) / 7));
        svg.append(name);
        if (node.status === "skipped" && node.end != null && !node.tries.length) {
          var cx = x(node.end), cy = top + r * rowH + rowH / 2;
          svg.append(sv("path", { d: "M" + cx + " " + (cy - 5) + "l5 5l-5 5l-5 -5z", "class": "skip-mark", "data-node": i, "data-skipped": "" }));
        }
      });
      NODES.forEach(function (node, i) {  // a retried node's wait between attempts
        for (var k = 1; k < node.tries.length; k++) {
          var before = node.tries[k - 1], after = node.tries[k];
          if (before[1] == null || after[0] == null || !rowOf.has(i)) continue;
          var y = top + rowOf.get(i) * rowH + rowH / 2;
          svg.append(sv("line", { x1: x(before[1]), x2: x(after[0]), y1: y, y2: y, "class": "backoff" }));
        }
      });
    }
    items.forEach(function (b) {
      var node = NODES[b.i];
      var bx = x(b.start), w = Math.max(x(b.end) - bx, 2), y = top + b.row * rowH + (rowH - barH) / 2;
      var cls = "bar s-" + b.status + (critStep.has(b.i) ? " critical" : "") + (b.last ? "" : " retry") + (selected === b.i ? " selected" : "");
      svg.append(sv("rect", { x: bx, y: y, width: w, height: barH, rx: 2, "class": cls, "data-node": b.i, "data-attempt": b.number, "data-name": node.name }));
      if (!rows && w > 40) {
        var text = sv("text", { x: bx + 4, y: y + barH / 2 + 4, "class": "bar-label" });
        text.textContent = truncate(node.name, Math.floor((w - 8) / 6.5));
        svg.append(text);
      }
    });
    box.replaceChildren(svg);
    document.querySelectorAll("[data-layout]").forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.layout === layout)); });
  }
  function renderLegend() {
    var found = counts();
    var legend = document.getElementById("legend");
    legend.replaceChildren.apply(legend, STATUSES.filter(function (s) { return found[s]; }).map(function (s) {
      return el("span", null, [el("span", { cls: "dot s-" + s }), label(s)]);
    }).concat([el("span", null, [el("span", { cls: "crit" }), "critical path"])]));
  }
  function tipText(i, attempt) {
    var node = NODES[i];
    var lines = [node.name + (node.group ? " (group)" : "")];
    var tries = node.tries;
    if (attempt && tries.length > 1) {
      var t = tries[attempt - 1];
      lines.push(label(t[2]) + " · attempt " + attempt + " of " + tries.length);
      lines.push("start " + offset(t[0]) + " · took " + dur((t[1] != null ? t[1] : total) - t[0]));
      if (t[3] != null) lines.push("exit code " + t[3]);
    } else {
      lines.push(label(node.status) + (node.exit != null ? " · exit code " + node.exit : ""));
      if (node.start != null) lines.push("start " + offset(node.start) + " · took " + dur(nodeDuration(node)));
      else if (node.end != null) lines.push("decided at " + offset(node.end));
    }
    if (node.saved != null) lines.push("saved " + dur(node.saved));
    if (critStep.has(i)) lines.push("on the critical path: " + pct(share(nodeDuration(node) || 0)) + " of the run");
    if (node.error) lines.push(truncate(node.error, 200));
    return lines.join("\n");
  }
  function showTip(event) {
    var target = event.target.closest ? event.target.closest("[data-node]") : null;
    if (!target) { tooltip.hidden = true; return; }
    tooltip.textContent = tipText(Number(target.getAttribute("data-node")), Number(target.getAttribute("data-attempt")) || 0);
    tooltip.hidden = false;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    tooltip.style.left = Math.min(event.clientX + 14, window.innerWidth - w - 8) + "px";
    tooltip.style.top = (event.clientY + 16 + h > window.innerHeight ? event.clientY - h - 10 : event.clientY + 16) + "px";
  }
  function clickNode(event) {
    var target = event.target.closest ? event.target.closest("[data-node]") : null;
    if (target) select(Number(target.getAttribute("data-node")));
  }

  // -- critical path ------------------------------------------------------------------------

  function renderCritical() {
    var box = document.getElementById("critical");
    if (!CRIT.steps.length) { box.replaceChildren(el("p", { cls: "note", text: "No node ran." })); return; }
    var rows = CRIT.steps.map(function (step, k) {
      var i = step[0], took = step[2] - step[1], part = share(took);
      return el("tr", { "data-node": i, onclick: function () { select(i); } }, [
        el("td", { cls: "num", text: String(k + 1) }),
        el("td", null, [el("span", { cls: "dot s-" + NODES[i].status }), NODES[i].name]),
        el("td", { cls: "num", text: offset(step[1]) }),
        el("td", { cls: "num", text: step[3] >= 0.0005 ? dur(step[3]) : "–" }),
        el("td", { cls: "num", text: dur(took) }),
        el("td", { cls: "share" }, [el("span", { cls: "share-bar", style: "width:" + Math.max(part, 0.5).toFixed(1) + "%" }), pct(part)]),
      ]);
    });
    var table = el("table", { cls: "crit-table", id: "critical-table" }, [
      el("thead", null, [el("tr", null, ["#", "Node", "Start", "Waited before", "Duration", "Share of the run"].map(function (h, k) {
        return el("th", { cls: k === 0 || (k >= 2 && k <= 4) ? "num" : null, text: h });
      }))]),
      el("tbody", null, rows),
    ]);
    var parts = [
      el("p", { cls: "crit-summary" }, [
        "The run took " + dur(CRIT.total) + ": " + CRIT.steps.length + " node" + (CRIT.steps.length > 1 ? "s" : "") +
        " ran one after the other for " + dur(CRIT.working) + " (" + pct(share(CRIT.working)) + "), waiting " +
        dur(CRIT.waiting) + " (" + pct(share(CRIT.waiting)) + ") to start, and the run took " + dur(CRIT.closing) +
        " to close after the last one. Speeding up any other node does not shorten the run.",
      ]),
      table,
    ];
    if (CRIT.by_time) {
      parts.unshift(el("p", { cls: "note", text: "This run's dependencies were not recorded: each step is the node that finished last before the next one started." }));
    }
    box.replaceChildren.apply(box, parts);
  }

  // -- dependency graph ---------------------------------------------------------------------

  function renderGraph() {
    var box = document.getElementById("graph");
    var note = document.getElementById("graph-note");
    if (RUN.graph === "tree") note.textContent = "Dependencies were not recorded for this run: the graph shows its tree of nodes only.";
    var drawn = [];
    NODES.forEach(function (n, i) { if (!n.hidden) drawn.push(i); });
    if (!drawn.length) { box.replaceChildren(el("p", { cls: "note", text: "No nodes." })); return; }
    var isDrawn = new Set(drawn);
    var edges = DATA.edges.filter(function (e) { return isDrawn.has(e[0]) && isDrawn.has(e[1]) && e[0] !== e[1]; });
    var succ = new Map(), pred = new Map(), indeg = new Map();
    drawn.forEach(function (i) { succ.set(i, []); pred.set(i, []); indeg.set(i, 0); });
    edges.forEach(function (e) { succ.get(e[0]).push(e[1]); pred.get(e[1]).push(e[0]); indeg.set(e[1], indeg.get(e[1]) + 1); });
    var layerOf = new Map(), queue = [];
    drawn.forEach(function (i) { if (!indeg.get(i)) { queue.push(i); layerOf.set(i, 0); } });
    for (var q = 0; q < queue.length; q++) {
      var v = queue[q];
      succ.get(v).forEach(function (w) {
        layerOf.set(w, Math.max(layerOf.get(w) || 0, layerOf.get(v) + 1));
        indeg.set(w, indeg.get(w) - 1);
        if (!indeg.get(w)) queue.push(w);
      });
    }
    var deepest = 0;
    layerOf.forEach(function (l) { deepest = Math.max(deepest, l); });
    drawn.forEach(function (i) { if (!layerOf.has(i) || indeg.get(i) > 0) layerOf.set(i, deepest + 1); });  // in a cycle: never in good data
    var layers = [];
    drawn.forEach(function (i) { var l = layerOf.get(i); (layers[l] = layers[l] || []).push(i); });
    layers = layers.filter(Boolean);
    var pos = new Map();
    function place(layer) { layer.forEach(function (i, k) { pos.set(i, k - (layer.length - 1) / 2); }); }
    layers.forEach(place);
    function centre(i, others) {
      var list = others.get(i).filter(function (j) { return pos.has(j); });
      if (!list.length) return pos.get(i);
      return list.reduce(function (s, j) { return s + pos.get(j); }, 0) / list.length;
    }
    for (var sweep = 0; sweep < 4; sweep++) {
      var down = sweep % 2 === 0;
      var sequence = down ? layers.slice(1) : layers.slice(0, -1).reverse();
      sequence.forEach(function (layer) {
        var keys = new Map();
        layer.forEach(function (i) { keys.set(i, centre(i, down ? pred : succ)); });
        layer.sort(function (a, b) { return keys.get(a) - keys.get(b) || a - b; });
        place(layer);
      });
    }
    var nodeW = 168, nodeH = 30, gapX = 22, gapY = 56, wrapGap = 16, margin = 20;
    var perRow = Math.max(4, Math.floor((Math.max(box.clientWidth, 800) - 2 * margin + gapX) / (nodeW + gapX)));
    var widest = Math.min(perRow, Math.max.apply(null, layers.map(function (l) { return l.length; })));
    var width = 2 * margin + widest * (nodeW + gapX) - gapX;
    var xy = new Map(), y = margin;
    layers.forEach(function (layer) {
      for (var start = 0; start < layer.length; start += perRow) {
        var row = layer.slice(start, start + perRow);
        var x0 = margin + ((widest - row.length) * (nodeW + gapX)) / 2;
        row.forEach(function (i, k) { xy.set(i, [x0 + k * (nodeW + gapX), y]); });
        y += nodeH + (start + perRow < layer.length ? wrapGap : gapY);
      }
    });
    var height = y - gapY + nodeH + margin;
    var svg = sv("svg", { width: width, height: height, id: "graph-svg", role: "img", "aria-label": "Dependency graph of the run's nodes" });
    // Edges of a kind are one path each (thousands of elements cost more than one long path); the critical ones on top.
    var solid = [], dashed = [], critical = [], showLabels = edges.length <= 400;
    edges.forEach(function (e) {
      var a = xy.get(e[0]), b = xy.get(e[1]);
      var x1 = a[0] + nodeW / 2, y1 = a[1] + nodeH, x2 = b[0] + nodeW / 2, y2 = b[1];
      var bend = Math.max(Math.abs(y2 - y1) / 2, 20);
      // The curve, then its arrowhead: edges end going straight down, into the top of their node.
      var d = "M" + x1 + " " + y1 + "C" + x1 + " " + (y1 + bend) + " " + x2 + " " + (y2 - bend) + " " + x2 + " " + y2 +
        "M" + (x2 - 4) + " " + (y2 - 7) + "L" + x2 + " " + y2 + "L" + (x2 + 4) + " " + (y2 - 7);
      var onPath = critStep.has(e[0]) && critStep.get(e[1]) === critStep.get(e[0]) + 1;
      (onPath ? critical : e[3] ? solid : dashed).push(d);
      if (showLabels && e[2] && e[2] !== "needs") {  // dashed says "needs": artifacts' names are worth a label
        var t = sv("text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2, "class": "edge-label" });
        t.textContent = truncate(e[2], 24);
        svg.append(t);
      }
    });
    [[solid, "edge"], [dashed, "edge dashed"], [critical, "edge critical"]].forEach(function (kind) {
      if (kind[0].length) svg.append(sv("path", { d: kind[0].join(""), "class": kind[1] }));
    });
    drawn.forEach(function (i) {
      var node = NODES[i], p = xy.get(i);
      var g = sv("g", {
        "class": "gnode s-" + node.status + (node.group ? " group" : "") + (critStep.has(i) ? " critical" : ""),
        transform: "translate(" + p[0] + "," + p[1] + ")", "data-node": i, "data-name": node.name, "data-status": node.status,
      });
      var r = node.group ? 15 : 4;
      g.append(sv("rect", { width: nodeW, height: nodeH, rx: r }));
      var text = sv("text", { x: 10, y: nodeH / 2 + 4 });
      text.textContent = truncate(node.name, 21);
      g.append(text);
      svg.append(g);
    });
    box.replaceChildren(svg);
  }

  // -- nodes table, details and logs ----------------------------------------------------------

  var tbodies = [];
  var sortKey = "start", sortDir = 1;
  function sortValue(i, key) {
    var node = NODES[i];
    if (key === "name") return node.name.toLowerCase();
    if (key === "status") return node.status;
    if (key === "start") return node.start != null ? node.start : Infinity;
    if (key === "duration") { var d = nodeDuration(node); return d != null ? d : -1; }
    if (key === "attempts") return node.attempts;
    if (key === "exit") return node.exit != null ? node.exit : -1;
    return i;
  }
  function sortTable() {
    var rowsBox = document.getElementById("node-rows");
    var order = [];
    tbodies.forEach(function (tb, i) { if (tb) order.push(i); });
    order.sort(function (a, b) {
      var va = sortValue(a, sortKey), vb = sortValue(b, sortKey);
      if (va < vb) return -sortDir;
      if (va > vb) return sortDir;
      return a - b;
    });
    var frag = document.createDocumentFragment();
    order.forEach(function (i) { frag.append(tbodies[i]); });
    rowsBox.append(frag);
    document.querySelectorAll("#nodes [data-key]").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
    });
  }
  function applyFilters() {
    var text = document.getElementById("filter-name").value.trim().toLowerCase();
    var status = document.getElementById("filter-status").value;
    var shown = 0, listed = 0;
    tbodies.forEach(function (tb, i) {
      if (!tb) return;
      listed++;
      var node = NODES[i];
      var ok = (!status || node.status === status) && (!text || node.name.toLowerCase().indexOf(text) >= 0 || node.path.toLowerCase().indexOf(text) >= 0);
      tb.hidden = !ok;
      if (ok) shown++;
    });
    document.getElementById("nodes-count").textContent = shown === listed ? listed + " nodes" : shown + " of " + listed + " nodes";
  }
  function setStatusFilter(status) {
    document.getElementById("filter-status").value = status;
    applyFilters();
  }
  function renderTable() {
    var frag = document.createDocumentFragment();
    NODES.forEach(function (node, i) {
      var d = nodeDuration(node);
      if (node.hidden) { tbodies.push(null); return; }  // a graph-form file's implicit root: not a node the user wrote
      var row = el("div", { cls: "row", role: "row", tabindex: "0", onclick: function () { toggle(i); }, onkeydown: function (e) { if (e.key === "Enter") toggle(i); } }, [
        el("div", { role: "cell" }, [
          el("span", { cls: "dot s-" + node.status }),
          el("span", { cls: "name", text: node.name }),
          node.group ? el("span", { cls: "muted", text: " (group)" }) : null,
          critStep.has(i) ? el("span", { cls: "crit-tag", text: "critical " + pct(share(d || 0)) }) : null,
          node.path !== node.name ? el("div", { cls: "path", text: node.path }) : null,
        ]),
        el("div", { role: "cell", cls: "status", text: label(node.status) }),
        el("div", { role: "cell", cls: "num", text: offset(node.start) }),
        el("div", { role: "cell", cls: "num", text: dur(d) }),
        el("div", { role: "cell", cls: "num", text: String(node.attempts || 0) }),
        el("div", { role: "cell", cls: "num", text: node.exit != null ? String(node.exit) : "–" }),
      ]);
      var tb = el("div", { cls: "node s-" + node.status, "data-node": i, "data-name": node.name, "data-status": node.status }, [row, el("div", { cls: "detail", hidden: true })]);
      tbodies.push(tb);
      frag.append(tb);
    });
    document.getElementById("node-rows").append(frag);
    var present = STATUSES.filter(function (s) { return NODES.some(function (n) { return n.status === s && !n.hidden; }); });
    var select = document.getElementById("filter-status");
    present.forEach(function (s) { select.append(el("option", { value: s, text: label(s) })); });
    document.querySelector("#nodes .thead").addEventListener("click", function (e) {
      var th = e.target.closest("[data-key]");
      if (!th) return;
      if (sortKey === th.dataset.key) sortDir = -sortDir;
      else { sortKey = th.dataset.key; sortDir = sortKey === "duration" ? -1 : 1; }
      sortTable();
    });
    document.getElementById("filter-name").addEventListener("input", applyFilters);
    select.addEventListener("change", applyFilters);
    sortTable();
    applyFilters();
  }
  function artifactHref(node, name) {
    var found = node.artifacts.find(function (a) { return a[0] === name; });
    return found ? found[1] : null;
  }
  var fillers = new WeakMap();
  function logBlock(i, stream) {
    var node = NODES[i], log = node.logs[stream];
    var href = artifactHref(node, stream);
    if (!log && !href) return null;
    var lines = log ? splitLines(log.text).length : 0;
    var what = !log ? "file missing" : log.size === 0 ? "empty" : size(log.size) + ", " + lines + " line" + (lines === 1 ? "" : "s") + (log.cut ? " shown (the end)" : "");
    var details = el("details", { cls: "log", "data-stream": stream }, [el("summary", null, [el("strong", { text: stream }), " · " + what])]);
    var filled = false;
    fillers.set(details, fill);
    details.addEventListener("toggle", function () { if (details.open) fill(); });
    return details;
    function fill() {
      if (filled) return;
      filled = true;
      var body = el("div", { cls: "log-body" });
      if (log && log.cut) {
        body.append(el("div", { cls: "log-note" }, [
          "The last " + size(log.size - log.cut) + " of " + size(log.size) + ". ",
          href ? el("a", { href: href, text: "The whole file" }) : null,
        ]));
      } else if (!log) {
        body.append(el("div", { cls: "log-note" }, ["The file is not where the run left it. ", href ? el("a", { href: href, text: "Its link" }) : null]));
      }
      var pre = el("pre", { cls: "log-text" });
      if (log && log.text) {
        pre.innerHTML = ansiHtmlLines(log.text).map(function (html, k) {
          return '<span class="line" data-n="' + (k + 1) + '">' + html + "</span>";
        }).join("");
      } else {
        pre.append(el("span", { cls: "empty line", text: "(no output)" }));
      }
      body.append(pre);
      details.append(body);
    }
  }
  // Open a log and draw it now (the toggle event that would draw it comes a task later).
  function openLog(details) {
    details.open = true;
    fillers.get(details)();
  }
  function fillDetail(i) {
    var node = NODES[i];
    var cell = tbodies[i].querySelector(".detail");
    if (cell.dataset.filled) return cell;
    cell.dataset.filled = "1";
    var facts = [["Path", node.path], ["Status", label(node.status) + (node.exit != null ? ", exit code " + node.exit : "")]];
    if (node.start != null) facts.push(["Started", offset(node.start)]);
    if (node.end != null) facts.push([node.start != null ? "Finished" : "Decided", offset(node.end)]);
    if (nodeDuration(node) != null) facts.push(["Duration", dur(nodeDuration(node))]);
    if (node.reused_from != null) facts.push(["Result from", node.reused_from + (node.saved != null ? " (saved " + dur(node.saved) + ")" : "")]);
    if (critStep.has(i)) facts.push(["Critical path", "step " + (critStep.get(i) + 1) + ", " + pct(share(nodeDuration(node) || 0)) + " of the run"]);
    var waits = (node.deps || []).concat(node.subtrees || []).filter(function (j) { return !NODES[j].group; });
    if (waits.length) facts.push(["Waited for", waits.map(function (j) { return NODES[j].name; }).join(", ")]);
    var parts = [el("dl", null, facts.reduce(function (all, f) { return all.concat([el("dt", { text: f[0] }), el("dd", { text: f[1] })]); }, []))];
    if (node.tries.length > 1) {
      parts.push(el("h4", { text: "Attempts" }));
      parts.push(el("ul", { cls: "attempts" }, node.tries.map(function (t, k) {
        return el("li", { text: "#" + (k + 1) + " " + label(t[2]) + (t[3] != null ? " (exit " + t[3] + ")" : "") + ", start " + offset(t[0]) + ", took " + dur((t[1] != null ? t[1] : total) - t[0]) });
      })));
    }
    if (node.error) parts.push(el("div", { cls: "error", text: node.error }));
    if (node.outputs.length) {
      parts.push(el("h4", { text: "Outputs" }));
      parts.push(el("table", { cls: "outputs" }, [el("tbody", null, node.outputs.map(function (o) { return el("tr", null, [el("td", { text: o[0] }), el("td", { text: o[1] })]); }))]));
    }
    if (node.artifacts.length) {
      parts.push(el("h4", { text: "Artifacts" }));
      parts.push(el("ul", { cls: "artifacts" }, node.artifacts.map(function (a) {
        return el("li", null, [el("a", { href: a[1], text: a[0] + (a[3] ? "/" : "") }), a[2] != null ? el("span", { cls: "muted", text: " " + size(a[2]) }) : null]);
      })));
    }
    STREAMS.forEach(function (stream) { var block = logBlock(i, stream); if (block) parts.push(block); });
    cell.append.apply(cell, parts);
    return cell;
  }
  function setOpen(i, open) {
    var tb = tbodies[i];
    if (open) fillDetail(i);
    tb.querySelector(".detail").hidden = !open;
    tb.classList.toggle("open", open);
  }
  function toggle(i) {
    if (tbodies[i].classList.contains("open")) setOpen(i, false);
    else select(i, { scroll: false });
  }
  function markSelected(i) {
    document.querySelectorAll(".selected").forEach(function (e) { e.classList.remove("selected"); });
    selected = i;
    tbodies[i].classList.add("selected");
    document.querySelectorAll('rect.bar[data-node="' + i + '"], g.gnode[data-node="' + i + '"]').forEach(function (e) { e.classList.add("selected"); });
  }
  // Show node i: its row opened, its logs unfolded (those with output; a failed node's both), scrolled to.
  function select(i, options) {
    options = options || {};
    var node = NODES[i];
    if (!tbodies[i]) return;
    if (tbodies[i].hidden) {
      document.getElementById("filter-name").value = "";
      setStatusFilter("");
    }
    setOpen(i, true);
    var failed = node.status === "failed" || node.status === "timed_out";
    var streams = options.streams || STREAMS.filter(function (s) { return node.logs[s] && (node.logs[s].size > 0 || failed); });
    tbodies[i].querySelectorAll("details.log").forEach(function (d) { if (streams.indexOf(d.dataset.stream) >= 0) openLog(d); });
    markSelected(i);
    try { history.replaceState(null, "", "#node=" + encodeURIComponent(node.name)); } catch (err) { /* a page without history */ }
    if (options.scroll !== false) tbodies[i].scrollIntoView({ block: "start" });
  }

  // -- log search ---------------------------------------------------------------------------

  var MAX_RESULTS = 200;
  function runSearch() {
    var query = document.getElementById("log-search").value;
    var list = document.getElementById("search-results");
    var counter = document.getElementById("search-count");
    list.replaceChildren();
    if (query.trim().length < 2) { counter.textContent = ""; return; }
    var needle = query.toLowerCase(), hits = 0, nodesHit = 0, frag = document.createDocumentFragment();
    NODES.forEach(function (node, i) {
      var found = false;
      STREAMS.forEach(function (stream) {
        plainLines(i, stream).forEach(function (line, k) {
          var at = line.toLowerCase().indexOf(needle);
          if (at < 0) return;
          hits++; found = true;
          if (hits > MAX_RESULTS) return;
          var from = Math.max(at - 60, 0);
          var snippet = (from ? "…" : "") + esc(line.slice(from, at)) + "<mark>" + esc(line.slice(at, at + query.length)) + "</mark>" + esc(line.slice(at + query.length, at + query.length + 140));
          var li = el("li", { "data-node": i, "data-stream": stream, "data-line": k + 1, onclick: function () { reveal(i, stream, k); } });
          li.innerHTML = '<span class="where"></span>' + snippet;
          li.firstChild.textContent = node.name + " · " + stream + ":" + (k + 1);
          frag.append(li);
        });
      });
      if (found) nodesHit++;
    });
    list.append(frag);
    counter.textContent = hits ? hits + " line" + (hits > 1 ? "s" : "") + " in " + nodesHit + " node" + (nodesHit > 1 ? "s" : "") + (hits > MAX_RESULTS ? " (the first " + MAX_RESULTS + " listed)" : "") : "not found";
  }
  function reveal(i, stream, k) {
    select(i, { streams: [stream], scroll: false });
    var details = tbodies[i].querySelector('details.log[data-stream="' + stream + '"]');
    document.querySelectorAll(".line.hit").forEach(function (e) { e.classList.remove("hit"); });
    var line = details && details.querySelectorAll("pre.log-text .line")[k];
    if (line) { line.classList.add("hit"); line.scrollIntoView({ block: "center" }); }
    else tbodies[i].scrollIntoView({ block: "start" });
  }

  // -- wiring -------------------------------------------------------------------------------

  function wire() {
    var timeline = document.getElementById("timeline"), graph = document.getElementById("graph");
    [timeline, graph].forEach(function (box) {
      box.addEventListener("mousemove", showTip);
      box.addEventListener("mouseleave", function () { tooltip.hidden = true; });
      box.addEventListener("click", clickNode);
    });
    document.querySelectorAll("[data-layout]").forEach(function (b) {
      b.addEventListener("click", function () { layout = b.dataset.layout; renderTimeline(); });
    });
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var how = b.dataset.zoom;
        zoom = how === "fit" ? 1 : how === "in" ? Math.min(zoom * 2, 256) : Math.max(zoom / 2, 1);
        renderTimeline();
      });
    });
    var pending = null;
    document.getElementById("log-search").addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(runSearch, 120);
    });
    var resized = null;
    window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(renderTimeline, 150); });
  }

  [renderHeader, renderLegend, renderTimeline, renderCritical, renderGraph, renderTable, wire].forEach(function (step) {
    step();
    performance.mark("wtflow:" + step.name);
  });
  var wanted = /^#node=(.*)$/.exec(location.hash);
  if (wanted) {
    var name = decodeURIComponent(wanted[1]);
    var index = NODES.findIndex(function (n) { return n.name === name; });
    if (index >= 0) select(index);
  }
  window.wtflowReport = { renderMs: performance.now() - began, select: select };
  document.body.setAttribute("data-ready", "1");
  // Once the drawn page has been laid out and painted: the time since navigation started, for tests and the curious.
  requestAnimationFrame(function () {
    setTimeout(function () {
      window.wtflowReport.paintedMs = performance.now();
      document.body.setAttribute("data-painted", "1");
    }, 0);
  });
})();
