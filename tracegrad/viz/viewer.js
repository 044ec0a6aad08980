// tracegrad viz viewer: draws the report data (tracegrad/viz/__init__.py) as SVG.
// Python gives each node a [layer, order] inside its container; here boxes get sizes
// (an expanded container is as big as its rows), then coordinates, then edges.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("tg-data").textContent);
  const N = DATA.nodes;            // key -> [label, kind, type, src, phase, op, params, grad_name]
  const SVGNS = "http://www.w3.org/2000/svg";
  const W = 150, H = 36, GX = 14, GY = 34, PAD = 12, HEAD = 18;
  const state = { view: 0, stage: 0, expanded: new Set(), selected: null,
                  zoom: 1, tx: 20, ty: 20 };

  // ---- page skeleton ----------------------------------------------------------
  function el(tag, attrs, parent, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  const side = el("div", { id: "side" }, document.body);
  const main = el("div", { id: "main" }, document.body);
  el("h1", {}, side, "tracegrad graphs");
  const viewSel = el("select", { id: "views" }, side);
  DATA.views.forEach((v, i) => el("option", { value: i }, viewSel, v.title));
  const info = el("div", { id: "info" }, side);
  el("h2", {}, side, "Stages");
  const nav = el("div", { class: "nav" }, side);
  const prevBtn = el("button", { id: "prev" }, nav, "\u25c0 prev");
  const nextBtn = el("button", { id: "next" }, nav, "next \u25b6");
  const stageList = el("ul", { id: "stages" }, side);
  const nav2 = el("div", { class: "nav" }, side);
  const expandBtn = el("button", { id: "expand" }, nav2, "expand all");
  const collapseBtn = el("button", { id: "collapse" }, nav2, "collapse all");
  const fitBtn = el("button", { id: "fit" }, nav2, "fit");
  el("h2", {}, side, "What this pass did");
  const diffBox = el("div", { id: "diff" }, side);
  el("h2", {}, side, "Node");
  const details = el("div", { id: "details" }, side, "click a node");
  el("h2", {}, side, "Legend");
  const legend = el("div", { class: "legend" }, side);
  for (const k in DATA.colors) el("span", { style: "background:" + DATA.colors[k] }, legend, k);
  el("div", { style: "font-size:11px;margin-top:4px" }, side,
     "green: added by this pass; red dashed: removed by the next pass; orange: fused by " +
     "the next pass; dashed box: a fused region or group (click to expand). " +
     "Drag to pan, wheel to zoom.");
  const status = el("pre", { id: "status" }, side);
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("id", "canvas");
  main.appendChild(svg);
  const viewport = document.createElementNS(SVGNS, "g");
  svg.appendChild(viewport);

  function stageData() {
    return DATA.views[state.view].stages[state.stage];
  }
  function isContainer(st, k) { return Object.prototype.hasOwnProperty.call(st.kids, k) && k !== ""; }

  // ---- sizes and positions ----------------------------------------------------
  function measure(st, key, sizes) {
    if (!isContainer(st, key) || !state.expanded.has(key)) {
      sizes[key] = { w: W, h: H };
      return sizes[key];
    }
    const rows = arrange(st, key, sizes);
    let w = 0, h = HEAD + PAD;
    for (const r of rows) { w = Math.max(w, r.w); h += r.h + GY; }
    sizes[key] = { w: Math.max(w + 2 * PAD, W), h: h - GY + PAD, rows: rows };
    return sizes[key];
  }
  function arrange(st, container, sizes) {
    const rows = [];
    for (const k of st.kids[container]) {
      const p = st.pos[k] || [0, 0];
      (rows[p[0]] = rows[p[0]] || { items: [], w: 0, h: 0 }).items.push(k);
    }
    const out = rows.filter(Boolean);
    for (const r of out) {
      r.items.sort((a, b) => st.pos[a][1] - st.pos[b][1]);
      for (const k of r.items) {
        const s = measure(st, k, sizes);
        r.w += s.w + GX; r.h = Math.max(r.h, s.h);
      }
      r.w -= GX;
    }
    return out;
  }
  function place(rows, x0, y0, width, sizes, at) {
    let y = y0;
    for (const r of rows) {
      let x = x0 + (width - r.w) / 2;
      for (const k of r.items) {
        const s = sizes[k];
        at[k] = { x: x, y: y, w: s.w, h: s.h };
        if (s.rows) place(s.rows, x + PAD, y + HEAD + PAD, s.w - 2 * PAD, sizes, at);
        x += s.w + GX;
      }
      y += r.h + GY;
    }
  }

  // the visible box standing for a leaf: its outermost collapsed container
  function representative(st, parentOf, k) {
    const chain = [];
    let c = k;
    while (c !== undefined && c !== "") { chain.push(c); c = parentOf[c]; }
    for (let i = chain.length - 1; i > 0; i--) {
      if (!state.expanded.has(chain[i])) return chain[i];
    }
    return k;
  }

  // ---- drawing ------------------------------------------------------------------
  function svgEl(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function render() {
    const view = DATA.views[state.view];
    const st = stageData();
    const next = view.stages[state.stage + 1];
    const parentOf = {};
    for (const c in st.kids) for (const k of st.kids[c]) parentOf[k] = c;
    const sizes = {};
    const rows = arrange(st, "", sizes);
    let width = 0;
    for (const r of rows) width = Math.max(width, r.w);
    const at = {};
    place(rows, 0, 0, width, sizes, at);

    const added = new Set(st.added);
    const doomed = new Set(next ? next.removed : []);
    const fusing = new Set(next ? next.fused : []);
    viewport.textContent = "";
    const edgeLayer = svgEl("g", {}, viewport);
    const frameLayer = svgEl("g", {}, viewport);
    const nodeLayer = svgEl("g", {}, viewport);
    let drawn = 0, markedAdded = 0;
    for (const k in at) {
      const b = at[k];
      const container = isContainer(st, k);
      if (container && state.expanded.has(k)) {
        const f = svgEl("g", { class: "frame", "data-key": k }, frameLayer);
        svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }, f);
        svgEl("text", { x: b.x + 6, y: b.y + 13 }, f, "\u2212 " + titleOf(st, k));
        f.addEventListener("click", (ev) => { ev.stopPropagation(); toggle(k); });
        continue;
      }
      const cls = ["node"];
      if (container) cls.push("container");
      if (added.has(k)) { cls.push("added"); markedAdded++; }
      if (doomed.has(k)) cls.push("doomed");
      if (fusing.has(k)) cls.push("fusing");
      if (st.outs[k] !== undefined) cls.push("output");
      if (state.selected === k) cls.push("selected");
      const g = svgEl("g", { class: cls.join(" "), "data-key": k }, nodeLayer);
      const n = N[k];
      const kind = st.groups[k] ? "group" : n[1];
      svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 5,
                      fill: DATA.colors[kind] || "#eee" }, g);
      svgEl("text", { x: b.x + b.w / 2, y: b.y + 15, "text-anchor": "middle" }, g,
            clip((container ? "+ " : "") + titleOf(st, k), 24));
      svgEl("text", { x: b.x + b.w / 2, y: b.y + 29, "text-anchor": "middle", class: "sub" }, g,
            clip(st.groups[k] ? st.groups[k][1] + " nodes" : n[2] +
                 (st.outs[k] !== undefined ? " \u2192 " + st.outs[k] : ""), 26));
      svgEl("title", {}, g, tooltip(st, k));
      g.addEventListener("click", (ev) => {
        ev.stopPropagation();
        state.selected = k;
        showDetails(st, k);
        if (container) toggle(k); else render();
      });
      drawn++;
    }
    const seen = new Set();
    for (const [u, v] of st.edges) {
      const a = representative(st, parentOf, u), b = representative(st, parentOf, v);
      if (a === b || !at[a] || !at[b]) continue;
      const id = a + ">" + b;
      if (seen.has(id)) continue;
      seen.add(id);
      const p = at[a], q = at[b];
      const x0 = p.x + p.w / 2, y0 = p.y + p.h, x1 = q.x + q.w / 2, y1 = q.y;
      const dy = Math.max(GY / 2, (y1 - y0) / 2);
      svgEl("path", { class: "edge",
                      d: `M${x0},${y0} C${x0},${y0 + dy} ${x1},${y1 - dy} ${x1},${y1}` }, edgeLayer);
    }
    svg.setAttribute("data-drawn", drawn);
    svg.setAttribute("data-stage", st.name);
    svg.setAttribute("data-added", markedAdded);
    svg.setAttribute("data-edges", seen.size);
    state.bounds = { w: width, h: rows.reduce((s, r) => s + r.h + GY, 0) };
    applyTransform();
    renderSide(view, st, drawn);
  }
  function titleOf(st, k) {
    if (st.groups[k]) return st.groups[k][0];
    return N[k][0];
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
  function tooltip(st, k) {
    if (st.groups[k]) return st.groups[k][0] + "\n" + st.groups[k][1] + " nodes (click to expand)";
    const n = N[k];
    let t = n[5] + "  " + n[2] + "\nkind: " + n[1] + "  phase: " + n[4];
    if (n[3]) t += "\nsource: " + n[3];
    if (n[6]) t += "\n" + n[6];
    if (n[7]) t += "\ngrad_fn: " + n[7];
    if (st.outs[k] !== undefined) t += "\noutput: " + st.outs[k];
    return t;
  }
  function showDetails(st, k) { details.textContent = k + "\n" + tooltip(st, k); }

  function renderSide(view, st, drawn) {
    info.textContent = view.info || "";
    stageList.textContent = "";
    view.stages.forEach((s, i) => {
      const li = el("li", { class: i === state.stage ? "current" : "", "data-index": i }, stageList);
      el("span", {}, li, s.name);
      el("span", {}, li, s.eqns + " eqns, " + (1000 * (s.seconds || 0)).toFixed(2) + " ms");
      li.addEventListener("click", () => { state.stage = i; render(); });
    });
    prevBtn.disabled = state.stage === 0;
    nextBtn.disabled = state.stage === view.stages.length - 1;
    diffBox.textContent = "";
    if (state.stage === 0) {
      el("div", {}, diffBox, "the traced graph: " + st.count + " nodes");
    } else {
      const prev = view.stages[state.stage - 1];
      el("div", {}, diffBox, `${prev.name} \u2192 ${st.name}: ${prev.count} \u2192 ${st.count} nodes; ` +
         `${st.added.length} added, ${st.removed.length} removed, ${st.fused.length} fused`);
      const shown = st.removed.slice(0, 40);
      for (const k of shown) {
        const n = N[k];
        el("div", { class: "gone" }, diffBox, "\u2212 " + n[0] + " " + n[2] + (n[3] ? "  " + n[3] : ""));
      }
      if (st.removed.length > shown.length) el("div", {}, diffBox, `\u2026 ${st.removed.length - shown.length} more`);
    }
    status.textContent = JSON.stringify({ view: state.view, stage: st.name, index: state.stage,
      drawn: drawn, count: st.count, added: st.added.length, removed: st.removed.length,
      fused: st.fused.length, marked_added: Number(svg.getAttribute("data-added")) });
  }

  function toggle(k) {
    if (state.expanded.has(k)) state.expanded.delete(k); else state.expanded.add(k);
    render();
  }

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
    state.view = Number(viewSel.value); state.stage = 0; state.expanded.clear(); render(); fit();
  });
  prevBtn.addEventListener("click", () => { if (state.stage > 0) { state.stage--; render(); } });
  nextBtn.addEventListener("click", () => {
    if (state.stage < DATA.views[state.view].stages.length - 1) { state.stage++; render(); }
  });
  expandBtn.addEventListener("click", () => {
    const st = stageData();
    for (const k in st.kids) if (k !== "") state.expanded.add(k);
    render(); fit();
  });
  collapseBtn.addEventListener("click", () => { state.expanded.clear(); render(); fit(); });
  fitBtn.addEventListener("click", fit);
  window.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowRight") nextBtn.click();
    if (ev.key === "ArrowLeft") prevBtn.click();
  });

  // #view=0&stage=fusion&click=next,next : open a given view and stage, then press
  // buttons (links into the report, and the browser test)
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("view")) { state.view = Number(params.get("view")); viewSel.value = state.view; }
  if (params.has("stage")) {
    const want = params.get("stage");
    const i = DATA.views[state.view].stages.findIndex((s, j) => s.name === want || String(j) === want);
    if (i >= 0) state.stage = i;
  }
  render();
  fit();
  for (const id of (params.get("click") || "").split(",").filter(Boolean)) {
    const b = document.getElementById(id);
    if (b) b.click();
  }
  document.body.setAttribute("data-ready", "1");
})();
