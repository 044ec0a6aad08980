// tracegrad viz viewer: draws the report data (tracegrad/viz/__init__.py) as SVG.
// Python gives each node a [layer, order] inside its container (NOTE: [Viewer grouping]);
// here boxes get sizes (an expanded container is as big as its rows), then coordinates,
// then edges.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("tg-data").textContent);
  // key -> [label, kind, type, src, phase, op, params, grad_name, module, op_kind]
  const N = DATA.nodes;
  const LINES = DATA.lines || {};
  const SVGNS = "http://www.w3.org/2000/svg";
  const W = 150, H = 36, GX = 14, GY = 34, PAD = 12, HEAD = 18, BANDHEAD = 26;
  const EDGE_CAP = 2500;
  const WRAP = 16;  // more edges than this between visible boxes: bundle them
  const PHASE_COLORS = { inputs: "#eef5fb", forward: "#f3f9ef", backward: "#f7f0f8",
                         optimizer: "#eef2fa", other: "#f7f7f2" };
  const state = { view: 0, stage: 0, expanded: new Set(), visited: new Set(), selected: null,
                  zoom: 1, tx: 20, ty: 20, edges: "auto", found: [] };

  // ---- page skeleton ----------------------------------------------------------
  function el(tag, attrs, parent, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function section(title, parent, open) {
    const d = el("details", open ? { open: "" } : {}, parent);
    el("summary", {}, d, title);
    return d;
  }
  const side = el("div", { id: "side" }, document.body);
  const main = el("div", { id: "main" }, document.body);
  el("h1", {}, side, "tracegrad graphs");
  const viewSel = el("select", { id: "views" }, side);
  DATA.views.forEach((v, i) => el("option", { value: i }, viewSel, v.title));
  const info = el("div", { id: "info" }, side);
  const fnBox = section("Function: guards, breaks, recompiles", side, true);
  const fnPanel = el("div", { id: "function" }, fnBox);
  el("h2", {}, side, "Stages");
  const nav = el("div", { class: "nav" }, side);
  const prevBtn = el("button", { id: "prev" }, nav, "\u25c0 prev");
  const nextBtn = el("button", { id: "next" }, nav, "next \u25b6");
  const stageList = el("ul", { id: "stages" }, side);
  const searchBox = el("input", { id: "search", type: "search",
                                  placeholder: "search name, op, module, line" }, side);
  const results = el("div", { id: "results" }, side);
  const nav2 = el("div", { class: "nav" }, side);
  const expandBtn = el("button", { id: "expand" }, nav2, "expand all");
  const collapseBtn = el("button", { id: "collapse" }, nav2, "collapse all");
  const fitBtn = el("button", { id: "fit" }, nav2, "fit");
  const edgeBtn = el("button", { id: "edges" }, nav2, "edges: auto");
  el("h2", {}, side, "What this pass did");
  const diffBox = el("div", { id: "diff" }, side);
  el("h2", {}, side, "Node");
  const details = el("div", { id: "details" }, side, "click a node");
  const codeBox = section("Generated jax source", side, false);
  const jaxPane = el("pre", { id: "jax", class: "code" }, codeBox);
  const hloBox = section("XLA HLO", side, false);
  const hloPane = el("pre", { id: "hlo", class: "code" }, hloBox);
  el("h2", {}, side, "Legend");
  const legend = el("div", { class: "legend" }, side);
  for (const k in DATA.colors) el("span", { style: "background:" + DATA.colors[k] }, legend, k);
  el("div", { style: "font-size:11px;margin-top:4px" }, side,
     "Bands: inputs, then forward, backward and optimizer (each a run of equations of " +
     "one phase). Inside a band: the module tree, then runs of one source line. " +
     "Dashed box: a group or fused region (click to expand; click its frame to " +
     "collapse). Green: added by this pass; red dashed: removed by the next pass; " +
     "orange: fused by the next pass. Hover a box to light up its neighbours. " +
     "Drag to pan, wheel to zoom.");
  const status = el("pre", { id: "status" }, side);
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("id", "canvas");
  main.appendChild(svg);
  const eagerMsg = el("div", { id: "eager" }, main);
  const viewport = document.createElementNS(SVGNS, "g");
  svg.appendChild(viewport);

  function viewData() { return DATA.views[state.view]; }
  function stageData() { return viewData().stages[state.stage]; }
  function isContainer(st, k) { return Object.prototype.hasOwnProperty.call(st.kids, k) && k !== ""; }
  function group(st, k) { return st.groups[k]; }

  // ---- sizes and positions ----------------------------------------------------
  function headOf(st, k) { const g = group(st, k); return g && g[2] === "band" ? BANDHEAD : HEAD; }
  function measure(st, key, sizes) {
    if (!isContainer(st, key) || !state.expanded.has(key)) {
      sizes[key] = { w: W, h: H };
      return sizes[key];
    }
    const rows = arrange(st, key, sizes);
    let w = 0, h = headOf(st, key) + PAD;
    for (const r of rows) { w = Math.max(w, r.w); h += r.h + GY; }
    sizes[key] = { w: Math.max(w + 2 * PAD, W + 2 * PAD), h: h - GY + PAD, rows: rows };
    return sizes[key];
  }
  function arrange(st, container, sizes) {
    const rows = [];
    for (const k of st.kids[container]) {
      const p = st.pos[k] || [0, 0];
      (rows[p[0]] = rows[p[0]] || { items: [], w: 0, h: 0 }).items.push(k);
    }
    // a row wider than WRAP boxes (many inputs, a long run of independent updates)
    // wraps onto several rows
    const out = [];
    for (const r of rows.filter(Boolean)) {
      r.items.sort((a, b) => st.pos[a][1] - st.pos[b][1]);
      for (let i = 0; i < r.items.length; i += WRAP) {
        out.push({ items: r.items.slice(i, i + WRAP), w: 0, h: 0 });
      }
    }
    for (const r of out) {
      for (const k of r.items) {
        const s = measure(st, k, sizes);
        r.w += s.w + GX; r.h = Math.max(r.h, s.h);
      }
      r.w -= GX;
    }
    return out;
  }
  function place(st, rows, x0, y0, width, sizes, at) {
    let y = y0;
    for (const r of rows) {
      let x = x0 + (width - r.w) / 2;
      for (const k of r.items) {
        const s = sizes[k];
        at[k] = { x: x, y: y, w: s.w, h: s.h };
        if (s.rows) place(st, s.rows, x + PAD, y + headOf(st, k) + PAD, s.w - 2 * PAD, sizes, at);
        x += s.w + GX;
      }
      y += r.h + GY;
    }
  }

  // the visible box standing for a leaf: its outermost collapsed container
  function representative(parentOf, k) {
    const chain = [];
    let c = k;
    while (c !== undefined && c !== "") { chain.push(c); c = parentOf[c]; }
    for (let i = chain.length - 1; i > 0; i--) {
      if (!state.expanded.has(chain[i])) return chain[i];
    }
    return k;
  }
  function ancestors(parentOf, k) {
    const out = [];
    let c = parentOf[k];
    while (c !== undefined && c !== "") { out.push(c); c = parentOf[c]; }
    return out;
  }
  // bundled edges: lift both ends to the children of their lowest common container
  function lift(parentOf, a, b) {
    const ca = [a, ...ancestors(parentOf, a), ""], cb = [b, ...ancestors(parentOf, b), ""];
    const sb = new Set(cb);
    for (let i = 1; i < ca.length; i++) {
      if (sb.has(ca[i])) return [ca[i - 1], cb[cb.indexOf(ca[i]) - 1]];
    }
    return [a, b];
  }

  // ---- drawing ------------------------------------------------------------------
  function svgEl(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function parents(st) {
    const parentOf = {};
    for (const c in st.kids) for (const k of st.kids[c]) parentOf[k] = c;
    return parentOf;
  }
  let boxes = {}, adjacency = {};
  function render() {
    const view = viewData();
    if (!view.stages.length) { renderEager(view); return; }
    svg.style.display = ""; eagerMsg.style.display = "none";
    const st = stageData();
    const next = view.stages[state.stage + 1];
    const parentOf = parents(st);
    const sizes = {};
    const rows = arrange(st, "", sizes);
    let width = 0;
    for (const r of rows) width = Math.max(width, r.w);
    const at = {};
    place(st, rows, 0, 0, width, sizes, at);

    const added = new Set(st.added);
    const doomed = new Set(next ? next.removed : []);
    const fusing = new Set(next ? next.fused : []);
    viewport.textContent = "";
    const bandLayer = svgEl("g", {}, viewport);
    const edgeLayer = svgEl("g", {}, viewport);
    const frameLayer = svgEl("g", {}, viewport);
    const nodeLayer = svgEl("g", {}, viewport);
    boxes = {}; adjacency = {};
    let drawn = 0, markedAdded = 0;
    const bands = [];
    for (const k in at) {
      const b = at[k];
      const container = isContainer(st, k);
      const g = group(st, k);
      if (container && state.expanded.has(k)) {
        const band = g && g[2] === "band";
        const f = svgEl("g", { class: band ? "frame band" : "frame " + (g ? g[2] : "fusion"),
                               "data-key": k, "data-phase": band ? g[0] : "" },
                        band ? bandLayer : frameLayer);
        svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: band ? 10 : 6,
                        style: "fill:" + (band ? (PHASE_COLORS[g[0]] || "#f6f6f6") : "none") }, f);
        svgEl("text", { x: b.x + 8, y: b.y + (band ? 18 : 13) }, f,
              "\u2212 " + frameTitle(st, k));
        svgEl("title", {}, f, tooltip(st, k));
        f.addEventListener("click", (ev) => { ev.stopPropagation(); toggle(k); });
        if (band) bands.push(g[0]);
        continue;
      }
      const cls = ["node"];
      if (container) cls.push("container");
      if (g) cls.push("group-" + g[2]);
      if (added.has(k)) { cls.push("added"); markedAdded++; }
      if (doomed.has(k)) cls.push("doomed");
      if (fusing.has(k)) cls.push("fusing");
      if (st.outs[k] !== undefined) cls.push("output");
      if (state.selected === k) cls.push("selected");
      if (state.found.includes(k)) cls.push("found");
      const e = svgEl("g", { class: cls.join(" "), "data-key": k }, nodeLayer);
      const n = N[k];
      const kind = g ? "group" : n[1];
      svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 5,
                      fill: g && g[2] === "band" ? (PHASE_COLORS[g[0]] || "#eee")
                        : DATA.colors[kind] || "#eee" }, e);
      svgEl("text", { x: b.x + b.w / 2, y: b.y + 15, "text-anchor": "middle" }, e,
            clip((container ? "+ " : "") + titleOf(st, k), 24));
      svgEl("text", { x: b.x + b.w / 2, y: b.y + 29, "text-anchor": "middle", class: "sub" }, e,
            clip(subtitle(st, k), g && g[2] === "line" ? 24 : 27));
      svgEl("title", {}, e, tooltip(st, k));
      e.addEventListener("click", (ev) => {
        ev.stopPropagation();
        state.selected = k;
        showDetails(st, k);
        if (container) toggle(k); else render();
      });
      e.addEventListener("mouseenter", () => highlight(k, true));
      e.addEventListener("mouseleave", () => highlight(k, false));
      boxes[k] = e;
      if (g && g[2] === "band") bands.push(g[0]);
      drawn++;
    }
    // edges between visible boxes; bundled at container boundaries when there are many
    const pairs = new Map();
    for (const [u, v] of st.edges) {
      const a = representative(parentOf, u), b = representative(parentOf, v);
      if (a === b || !at[a] || !at[b]) continue;
      pairs.set(a + ">" + b, [a, b]);
    }
    let mode = state.edges;
    if (mode === "auto") mode = pairs.size > EDGE_CAP ? "bundled" : "all";
    const shown = new Map();
    for (const [a0, b0] of pairs.values()) {
      const [a, b] = mode === "bundled" ? lift(parentOf, a0, b0) : [a0, b0];
      if (a === b || !at[a] || !at[b]) continue;
      shown.set(a + ">" + b, [a, b]);
    }
    if (mode !== "none") {
      for (const [a, b] of shown.values()) {
        const p = at[a], q = at[b];
        const x0 = p.x + p.w / 2, y0 = p.y + p.h, x1 = q.x + q.w / 2, y1 = q.y;
        const dy = Math.max(GY / 2, (y1 - y0) / 2);
        const path = svgEl("path", { class: "edge",
          d: `M${x0},${y0} C${x0},${y0 + dy} ${x1},${y1 - dy} ${x1},${y1}` }, edgeLayer);
        (adjacency[a] = adjacency[a] || []).push([b, path]);
        (adjacency[b] = adjacency[b] || []).push([a, path]);
      }
    }
    edgeBtn.textContent = "edges: " + state.edges + (state.edges === "auto" ? " (" + mode + ")" : "");
    svg.setAttribute("data-drawn", drawn);
    svg.setAttribute("data-stage", st.name);
    svg.setAttribute("data-added", markedAdded);
    svg.setAttribute("data-edges", mode === "none" ? 0 : shown.size);
    state.bounds = { w: width, h: rows.reduce((s, r) => s + r.h + GY, 0) };
    state.at = at;
    applyTransform();
    renderSide(view, st, drawn, bands, mode === "none" ? 0 : shown.size);
  }
  function highlight(k, on) {
    const box = boxes[k];
    if (box) box.classList.toggle("hover", on);
    for (const [other, path] of adjacency[k] || []) {
      path.classList.toggle("lit", on);
      if (boxes[other]) boxes[other].classList.toggle("neighbour", on);
    }
  }
  function renderEager(view) {
    svg.style.display = "none"; eagerMsg.style.display = "";
    eagerMsg.textContent = view.title + " runs eagerly\n\n" + view.eager;
    info.textContent = view.info || "";
    renderPanels(view);
    stageList.textContent = "";
    status.textContent = JSON.stringify({ view: state.view, title: view.title, eager: view.eager,
                                          drawn: 0, count: 0 });
  }
  function frameTitle(st, k) {
    const g = group(st, k);
    if (!g) return titleOf(st, k);
    if (g[2] === "band") return g[0] + "  \u00b7  " + g[1] + (g[0] === "inputs" ? " inputs" : " equations");
    if (g[2] === "module") {
      const [path, src] = g[3].split(" @ ");
      return path + "  (" + g[1] + ")" + (src ? "   " + src + (LINES[src] ? "  " + clip(LINES[src], 50) : "") : "");
    }
    if (g[2] === "line") return g[0] + (LINES[g[0]] ? "   " + clip(LINES[g[0]], 60) : "");
    return g[0] + "  (" + g[1] + ")";
  }
  function titleOf(st, k) {
    const g = group(st, k);
    if (g) return g[0];
    return N[k][0];
  }
  function subtitle(st, k) {
    const g = group(st, k);
    if (g) {
      if (g[2] === "line" && LINES[g[0]]) return g[1] + ": " + LINES[g[0]];
      return g[1] + " nodes";
    }
    const n = N[k];
    const kind = n[9] && n[9] !== "elementwise" && n[9] !== n[0] ? " \u00b7 " + n[9] : "";
    return n[2] + kind + (st.outs[k] !== undefined ? " \u2192 " + st.outs[k] : "");
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
  function tooltip(st, k) {
    const g = group(st, k);
    if (g) {
      let t = g[2] + ": " + g[3] + "\n" + g[1] + " nodes (click to " +
        (state.expanded.has(k) ? "collapse" : "expand") + ")";
      if (g[2] === "line" && LINES[g[0]]) t += "\n" + LINES[g[0]];
      return t;
    }
    const n = N[k];
    if (n[5] === "input") {
      return n[0] + "\n" + n[2] + "  " + n[1] + (n[6] && n[6] !== n[0] ? "\nin the graph: " + n[6] : "") +
        (st.outs[k] !== undefined ? "\noutput: " + st.outs[k] : "");
    }
    let t = n[5] + "  " + n[2] + "\nkind: " + (n[9] || n[1]) + "  phase: " + n[4];
    if (n[8]) t += "\nmodule: " + n[8];
    if (n[3]) t += "\nsource: " + n[3] + (LINES[n[3]] ? "\n    " + LINES[n[3]] : "");
    if (n[6]) t += "\n" + n[6];
    if (n[7]) t += "\ngrad_fn: " + n[7];
    if (st.outs[k] !== undefined) t += "\noutput: " + st.outs[k];
    return t;
  }
  function showDetails(st, k) { details.textContent = tooltip(st, k); }

  function renderPanels(view) {
    const p = view.panels || {};
    fnPanel.textContent = "";
    if (p.counts) el("div", { class: "counts" }, fnPanel, p.counts);
    if (view.eager) el("div", { class: "break" }, fnPanel, "runs eagerly: " + view.eager);
    const lists = [["recompiles", "recompiled because"], ["breaks", "graph breaks"],
                   ["guards", "guards"]];
    for (const [key, title] of lists) {
      const items = p[key] || [];
      const d = section(title + " (" + items.length + ")", fnPanel, key !== "guards" && items.length > 0);
      d.setAttribute("id", "panel-" + key);
      const ul = el("ul", {}, d);
      for (const it of items) el("li", {}, ul, it);
    }
    jaxPane.textContent = p.jax || "(no generated source)";
    hloPane.textContent = p.hlo || "(no HLO text: tracegrad viz --hlo)";
  }
  function renderSide(view, st, drawn, bands, edges) {
    info.textContent = view.info || "";
    renderPanels(view);
    stageList.textContent = "";
    view.stages.forEach((s, i) => {
      const li = el("li", { class: i === state.stage ? "current" : "", "data-index": i }, stageList);
      el("span", {}, li, s.name);
      el("span", {}, li, s.eqns + " eqns, " + (1000 * (s.seconds || 0)).toFixed(2) + " ms");
      li.addEventListener("click", () => goStage(i));
    });
    prevBtn.disabled = state.stage === 0;
    nextBtn.disabled = state.stage === view.stages.length - 1;
    diffBox.textContent = "";
    const ph = Object.entries(st.phases || {}).map(([p, n]) => p + " " + n).join(", ");
    if (state.stage === 0) {
      el("div", {}, diffBox, "the traced graph: " + st.count + " nodes (" + ph + ")");
    } else {
      const prev = view.stages[state.stage - 1];
      el("div", {}, diffBox, `${prev.name} \u2192 ${st.name}: ${prev.count} \u2192 ${st.count} nodes; ` +
         `${st.added.length} added, ${st.removed.length} removed, ${st.fused.length} fused (${ph})`);
      const shownR = st.removed.slice(0, 40);
      for (const k of shownR) {
        const n = N[k];
        el("div", { class: "gone" }, diffBox, "\u2212 " + n[0] + " " + n[2] + (n[3] ? "  " + n[3] : ""));
      }
      if (st.removed.length > shownR.length) el("div", {}, diffBox, `\u2026 ${st.removed.length - shownR.length} more`);
    }
    const sel = state.selected && N[state.selected] ? N[state.selected][0] : null;
    status.textContent = JSON.stringify({ view: state.view, stage: st.name, index: state.stage,
      drawn: drawn, count: st.count, added: st.added.length, removed: st.removed.length,
      fused: st.fused.length, marked_added: Number(svg.getAttribute("data-added")),
      bands: bands, phases: st.phases, edges: edges, found: state.found.length,
      selected: sel, selected_drawn: !!(state.selected && boxes[state.selected]),
      expanded: state.expanded.size, groups: Object.keys(st.groups).length });
  }

  function toggle(k) {
    if (state.expanded.has(k)) state.expanded.delete(k); else state.expanded.add(k);
    render();
  }
  function enterStage() {
    const st = stageData();
    if (st && !state.visited.has(state.view + ":" + state.stage)) {
      state.visited.add(state.view + ":" + state.stage);
      for (const k of st.open || []) state.expanded.add(k);
    }
  }
  function goStage(i) {
    state.stage = i;
    enterStage();
    if (state.query) runSearch(state.query, false);
    render();
    fit();
  }

  // ---- search -------------------------------------------------------------------
  function runSearch(q, reveal) {
    state.query = q;
    results.textContent = "";
    state.found = [];
    const st = stageData();
    if (!q || !st) return;
    const needle = q.toLowerCase();
    const parentOf = parents(st);
    for (const k in parentOf) {
      const n = N[k];
      if (!n) continue;
      const hay = [n[0], n[5], n[3], n[8], n[6], LINES[n[3]] || ""].join("\n").toLowerCase();
      if (hay.includes(needle)) state.found.push(k);
    }
    // exact names first (a parameter before the ops that read it)
    state.found.sort((a, b) => (N[b][0].toLowerCase() === needle) - (N[a][0].toLowerCase() === needle));
    el("div", { class: "count" }, results, state.found.length + " match(es)");
    for (const k of state.found.slice(0, 30)) {
      const n = N[k];
      const row = el("div", { class: "hit", "data-key": k }, results,
                     n[0] + "  " + n[2] + (n[8] ? "  " + n[8] : "") + (n[3] ? "  " + n[3] : ""));
      row.addEventListener("click", () => revealKey(k));
    }
    if (reveal && state.found.length) revealKey(state.found[0]);
  }
  function revealKey(k) {
    const st = stageData();
    for (const a of ancestors(parents(st), k)) state.expanded.add(a);
    state.selected = k;
    render();
    showDetails(st, k);
    centerOn(k);
  }
  function centerOn(k, zoom) {
    const b = state.at && state.at[k];
    if (!b) return;
    const s = svg.getBoundingClientRect();
    state.zoom = zoom || Math.max(state.zoom, 0.8);
    // a box: its centre in the middle; a tall frame: its top near the top
    const cy = b.h * state.zoom > s.height ? b.y + s.height / (2 * state.zoom) - 20 : b.y + b.h / 2;
    state.tx = s.width / 2 - (b.x + b.w / 2) * state.zoom;
    state.ty = s.height / 2 - cy * state.zoom;
    applyTransform();
  }
  let searchTimer = null;
  searchBox.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { runSearch(searchBox.value.trim(), false); render(); }, 200);
  });
  searchBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") runSearch(searchBox.value.trim(), true);
  });

  // ---- pan and zoom -------------------------------------------------------------
  function applyTransform() {
    viewport.setAttribute("transform", `translate(${state.tx},${state.ty}) scale(${state.zoom})`);
  }
  function fit() {
    const r = svg.getBoundingClientRect();
    const b = state.bounds;
    if (!b || !b.w || !r.width) return;
    state.zoom = Math.min(1.5, (r.width - 40) / b.w, (r.height - 40) / b.h);
    state.tx = (r.width - b.w * state.zoom) / 2;
    state.ty = 20;
    applyTransform();
  }
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    const mx = ev.clientX - r.left, my = ev.clientY - r.top;
    const f = Math.exp(-ev.deltaY * 0.0015);
    state.tx = mx - (mx - state.tx) * f;
    state.ty = my - (my - state.ty) * f;
    state.zoom *= f;
    applyTransform();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("mousedown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, tx: state.tx, ty: state.ty }; });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    state.tx = drag.tx + ev.clientX - drag.x;
    state.ty = drag.ty + ev.clientY - drag.y;
    applyTransform();
  });
  window.addEventListener("mouseup", () => { drag = null; });

  // ---- controls -------------------------------------------------------------------
  viewSel.addEventListener("change", () => {
    state.view = Number(viewSel.value); state.expanded.clear(); state.visited.clear();
    state.selected = null; goStage(0);
  });
  prevBtn.addEventListener("click", () => { if (state.stage > 0) goStage(state.stage - 1); });
  nextBtn.addEventListener("click", () => {
    if (state.stage < viewData().stages.length - 1) goStage(state.stage + 1);
  });
  expandBtn.addEventListener("click", () => {
    // every group, not fused regions: those open one at a time
    const st = stageData();
    for (const k in st.groups) state.expanded.add(k);
    render(); fit();
  });
  collapseBtn.addEventListener("click", () => {
    const st = stageData();
    state.expanded.clear();
    for (const k in st.groups) if (st.groups[k][2] === "band") state.expanded.add(k);
    render(); fit();
  });
  fitBtn.addEventListener("click", fit);
  const EDGE_MODES = ["auto", "all", "bundled", "none"];
  edgeBtn.addEventListener("click", () => {
    state.edges = EDGE_MODES[(EDGE_MODES.indexOf(state.edges) + 1) % EDGE_MODES.length];
    render();
  });
  window.addEventListener("keydown", (ev) => {
    if (ev.target === searchBox) return;
    if (ev.key === "ArrowRight") nextBtn.click();
    if (ev.key === "ArrowLeft") prevBtn.click();
  });

  // #view=0&stage=fusion&click=next,next&open=model.fc1&search=model.fc1.weight : open a
  // view and stage, press buttons, expand module groups, search (links into the report,
  // and the browser test)
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("view")) {
    const want = params.get("view");
    const i = DATA.views.findIndex((v, j) => v.title === want || String(j) === want);
    state.view = i >= 0 ? i : 0;
    viewSel.value = state.view;
  }
  if (params.has("stage")) {
    const want = params.get("stage");
    const i = viewData().stages.findIndex((s, j) => s.name === want || String(j) === want);
    if (i >= 0) state.stage = i;
  }
  enterStage();
  render();
  fit();
  for (const id of (params.get("click") || "").split(",").filter(Boolean)) {
    const b = document.getElementById(id);
    if (b) b.click();
  }
  if (params.has("open") && viewData().stages.length) {
    const st = stageData();
    const parentOf = parents(st);
    for (const path of params.get("open").split(",")) {
      for (const k in st.groups) {
        if (st.groups[k][3].split(" @ ")[0] === path || st.groups[k][0] === path) {
          state.expanded.add(k);
          for (const a of ancestors(parentOf, k)) state.expanded.add(a);
        }
      }
    }
    render();
    fit();
  }
  if (params.has("focus") && viewData().stages.length) {
    // centre on the first drawn group with this module path (at zoom=, default 1)
    const st = stageData(), want = params.get("focus");
    const k = Object.keys(st.groups).find((g) => st.groups[g][3].split(" @ ")[0] === want &&
                                                state.at[g]);
    if (k) centerOn(k, Number(params.get("zoom") || 1));
  }
  if (params.has("search") && viewData().stages.length) {
    searchBox.value = params.get("search");
    runSearch(searchBox.value, true);
  }
  document.body.setAttribute("data-ready", "1");
})();
