// The Studio's diagram: draws the renderer's SVG and sends intents to the kernel.
// Plain ES module for anywidget (no build step). Python owns the circuit; this file keeps
// only view state (zoom, pan, hover) and never edits the drawing's meaning itself.

const SVGNS = "http://www.w3.org/2000/svg";

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}

function s(tag, attrs = {}) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// Nodes, blocks and wires are known by their ids, `ROLE:PATH` (widgets/canvas.py): the role
// is the text before the first `:`, the path (a name may hold `:`) the rest, the name a
// person knows it by: `output:y` -> `y`, `box:blocks/ln1` -> `blocks/ln1`.
function nameOf(id) {
  return id.slice(id.indexOf(":") + 1);
}

// A call drawn open is a block (`block:blocks`) for the drawing and a box for the circuit.
function callId(g) {
  return "box:" + nameOf(g.id);
}

const READABLE = 0.75;  // the scale at which wire labels (8 pt) read, at 8 px
const TOGGLE_ROOM = 11;  // a block's collapse toggle: 11 units wide, from 1 unit in

function render({ model, el }) {
  el.classList.add("ncd-studio");
  el.tabIndex = 0;
  // JupyterLab: keys pressed in the widget are the widget's (Ctrl+Z is not the notebook's).
  el.dataset.lmSuppressShortcuts = "true";
  let sentAt = 0;
  // Intents on "the selection" (add, add_output, add_subcircuit, delete) name no box: the
  // kernel reads its own, which has every select sent before them and the box it selected
  // itself after an edit, which this page may not have received yet.
  const send = (op, args = {}) => {
    sentAt = performance.now();
    model.send({ op, ...args });
  };

  // ---- toolbar ----------------------------------------------------------------------------
  const crumbs = h("span", { class: "ncd-crumbs" });
  const name = h("input", { class: "ncd-name", title: "circuit name", "aria-label": "name" });
  const title = h("input", {
    class: "ncd-title", title: "circuit title", placeholder: "title", "aria-label": "title",
  });
  const undo = h("button", { class: "ncd-undo", title: "undo (Ctrl+Z)" }, "↶");
  const redo = h("button", { class: "ncd-redo", title: "redo (Ctrl+Shift+Z)" }, "↷");
  const fit = h("button", {
    class: "ncd-fit",
    title: "the whole diagram in view (wheel: zoom; drag the background: pan; + and -: zoom)",
  }, "fit");
  const zoom = h("span", { class: "ncd-zoom", title: "zoom" });
  const inName = h("input", { class: "ncd-input-name", placeholder: "input", size: 6 });
  const inAxes = h("input", { class: "ncd-input-axes", placeholder: "B T D", size: 8 });
  const addIn = h("button", { class: "ncd-add-input", title: "add an input" }, "+ input");
  const outName = h("input", { class: "ncd-output-name", placeholder: "output", size: 6 });
  const addOut = h("button", {
    class: "ncd-add-output", title: "the selected box's result becomes an output",
  }, "+ output");
  const del = h("button", { class: "ncd-delete", title: "delete the selection (Delete)" }, "✕");
  const subName = h("input", { class: "ncd-sub-name", placeholder: "subcircuit", size: 9 });
  const addSub = h("button", {
    class: "ncd-add-sub",
    title: "a new subcircuit reading the selected box's result, called here and opened",
  }, "+ subcircuit");
  // A field and the button it feeds wrap as one: a toolbar narrower than one row put the
  // input's name and axes at the end of a row and `+ input` at the start of the next.
  const group = (...items) => h("span", { class: "ncd-group" }, ...items);
  const toolbar = h("div", { class: "ncd-toolbar" }, crumbs, name, title, group(undo, redo),
    group(fit, zoom), h("span", { class: "ncd-sep" }), group(inName, inAxes, addIn),
    group(outName, addOut), del, h("span", { class: "ncd-sep" }), group(subName, addSub));
  name.addEventListener("change", () => send("rename", { name: name.value.trim() }));
  title.addEventListener("change", () => send("retitle", { title: title.value }));
  // Enter applies them as every other field does: leaving the field (its change), with the
  // keys kept in the widget (Ctrl+Z then undoes the rename).
  for (const field of [name, title]) {
    field.addEventListener("keydown", (e) => {
      if (e.key === "Enter") el.focus({ preventScroll: true });
    });
  }
  undo.addEventListener("click", () => send("undo"));
  redo.addEventListener("click", () => send("redo"));
  fit.addEventListener("click", () => {
    mode = "fit";
    place();
  });
  // A name typed for an input, an output or a subcircuit is cleared once the edit is taken
  // (the next drawing), and kept when it is refused.
  let pending = null;
  addIn.addEventListener("click", () => {
    pending = inName;
    send("add_input", { name: inName.value.trim(), axes: inAxes.value.trim() });
  });
  addOut.addEventListener("click", () => {
    pending = outName;
    send("add_output", { name: outName.value.trim() });
  });
  del.addEventListener("click", () => send("delete"));
  addSub.addEventListener("click", () => {
    pending = subName;
    send("add_subcircuit", { name: subName.value.trim() });
  });
  // Enter in a toolbar field presses the button beside it.
  for (const [field, button] of [[inName, addIn], [inAxes, addIn], [outName, addOut],
    [subName, addSub]]) {
    field.addEventListener("keydown", (e) => {
      if (e.key === "Enter") button.click();
    });
  }

  // ---- palette ----------------------------------------------------------------------------
  const search = h("input", { class: "ncd-search", placeholder: "search boxes", type: "search" });
  const list = h("div", { class: "ncd-palette-list" });
  const palette = h("div", { class: "ncd-palette" }, search, list);
  // Without a search: every kind, by family. With one: the kinds that match, best first:
  // the kind's name, a value of one of its fields (`gelu`: unary with fn gelu, added so),
  // a name that starts or contains it, a field value that contains it, the family or the doc.
  function matches(q) {
    const found = [];
    model.get("palette").forEach((item, order) => {
      let best = null;
      const take = (rank, field, value) => {
        if (!best || rank < best.rank) best = { rank, field, value };
      };
      const kind = item.kind.toLowerCase();
      if (kind === q) take(0);
      else if (kind.startsWith(q)) take(2);
      else if (kind.includes(q)) take(3);
      for (const [field, values] of Object.entries(item.choices || {})) {
        for (const v of values) {
          const text = String(v).toLowerCase();
          if (text === q) take(1, field, v);
          else if (text.includes(q)) take(4, field, v);
        }
      }
      if (`${item.family} ${item.doc}`.toLowerCase().includes(q)) take(5);
      if (best) found.push({ item, order, ...best });
    });
    return found.sort((a, b) => a.rank - b.rank || a.order - b.order);
  }
  function row(item, field, value) {
    const fields = field ? { [field]: value } : null;
    const row = h("div", {
      class: "ncd-kind", "data-kind": item.kind,
      title: `${item.doc}\nclick: a box reading the selected one; Shift+click: one beside it, ` +
        "reading what it reads (q's projection selected: k's)",
    }, item.kind);
    if (field) {
      row.dataset.fields = JSON.stringify(fields);
      row.append(h("span", { class: "ncd-choice" }, ` ${field} ${value}`));
    }
    row.addEventListener("pointerdown", (e) => startPaletteDrag(e, item.kind, fields));
    return row;
  }
  function drawPalette() {
    const q = search.value.trim().toLowerCase();
    list.replaceChildren();
    if (q) {
      const found = matches(q);
      for (const m of found) list.append(row(m.item, m.field, m.value));
      // an empty list said nothing, and Enter did nothing: say why
      if (!found.length) {
        list.append(h("div", { class: "ncd-nomatch" },
          `no box kind or field value matches “${search.value.trim()}”`));
      }
      return;
    }
    let family = "";
    for (const item of model.get("palette")) {
      if (item.family !== family) {
        family = item.family;
        list.append(h("div", { class: "ncd-family" }, family));
      }
      list.append(row(item));
    }
  }
  search.addEventListener("input", drawPalette);
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      const first = list.querySelector(".ncd-kind");
      if (first) {
        const fields = first.dataset.fields ? JSON.parse(first.dataset.fields) : null;
        send("add", { kind: first.dataset.kind, fields, beside: e.shiftKey });
      }
    }
  });

  // ---- stage: pan and zoom ----------------------------------------------------------------
  const holder = h("div", { class: "ncd-holder" });
  const stage = h("div", { class: "ncd-stage" }, holder);
  const info = h("div", { class: "ncd-info" });
  const status = h("div", { class: "ncd-status" });
  const tip = h("div", { class: "ncd-tip" });
  el.append(toolbar, h("div", { class: "ncd-body" }, palette, stage), info, status, tip);
  let view = { x: 10, y: 10, k: 1 };
  // How the view follows the drawing. "open": the next drawing shown decides: one whose text
  // reads when it is shown whole is fitted ("fit"); a larger one is shown at the readable
  // scale from its left edge (the inputs), and the view is then the user's to pan and zoom.
  // "fit": the drawing whole at any scale, following its growth (the fit button too).
  // "user": kept across redraws (until fit, or a subcircuit is opened or left), panned only
  // to bring the selection into view.
  let mode = "open";
  const MIN_K = 0.02, MAX_K = 8;
  const apply = () => {
    holder.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.k})`;
    zoom.textContent = `${Math.round(view.k * 100)} %`;
    el.dataset.zoom = view.k.toFixed(3);
  };
  function place() {
    const svg = holder.querySelector("svg");
    if (!svg || mode === "user" || !shown()) return;
    const w = svg.width.baseVal.value || 1, hh = svg.height.baseVal.value || 1;
    const sw = stage.clientWidth, sh = stage.clientHeight;
    const whole = Math.min(1.5, (sw - 20) / w, (sh - 20) / hh);
    if (mode === "open") mode = whole >= READABLE ? "fit" : "user";
    view.k = mode === "fit" ? Math.max(MIN_K, whole) : READABLE;
    view.x = 10;
    view.y = Math.max(10, (sh - hh * view.k) / 2);
    apply();
  }
  // The selected node (or open call's frame) panned into view where it is not wholly in it.
  function reveal() {
    const sel = model.get("selected");
    const g = sel && !sel.startsWith("wire:") && holder.querySelector(
      `g.node[id="${CSS.escape(sel)}"], g.cluster[id="${CSS.escape("block:" + nameOf(sel))}"]`);
    if (!g || !shown()) return;
    const b = g.getBoundingClientRect(), r = stage.getBoundingClientRect();
    // the move along one axis that brings [lo, hi] into [a, z]: none where it is in; one
    // larger than the view moves only when wholly out, its start to a
    const shift = (lo, hi, a, z) => {
      if (lo >= a && hi <= z) return 0;
      if (hi - lo > z - a) return hi > a && lo < z ? 0 : a - lo;
      return lo < a ? a - lo : z - hi;
    };
    const dx = shift(b.left, b.right, r.left + 10, r.right - 10);
    const dy = shift(b.top, b.bottom, r.top + 10, r.bottom - 10);
    if (!dx && !dy) return;
    view.x += dx;
    view.y += dy;
    apply();
  }
  function zoomAt(px, py, k) {  // zoom to k, keeping the stage's point (px, py) in place
    k = Math.min(MAX_K, Math.max(MIN_K, k));
    view.x = px - ((px - view.x) * k) / view.k;
    view.y = py - ((py - view.y) * k) / view.k;
    view.k = k;
    mode = "user";
    apply();
  }
  // The browser scrolls the stage to show something in it (find in page, an element focused):
  // the view pans there instead, and the stage stays unscrolled (its origin is the view's).
  stage.addEventListener("scroll", () => {
    if (!stage.scrollLeft && !stage.scrollTop) return;
    view.x -= stage.scrollLeft;
    view.y -= stage.scrollTop;
    stage.scrollLeft = stage.scrollTop = 0;
    mode = "user";
    apply();
  });
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = stage.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, view.k * Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });
  // A call drawn open (its subcircuit in place, a block with a frame) is selected by a click
  // on its frame or title when it is a box of the circuit being edited (it has ports).
  function openCall(target) {
    const g = target.closest("g.cluster");
    return g && g.classList.contains("block-call") && model.get("ports")[callId(g)] ? g : null;
  }
  let pan = null;
  stage.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || e.target.closest(".ncd-handle, g.node, g.edge, .ncd-toggle")) return;
    pan = {
      x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false, call: openCall(e.target),
    };
  });
  stage.addEventListener("pointermove", (e) => {
    if (pan && !(e.buttons & 1)) pan = null;  // released outside the stage before a drag
    if (pan) {
      const dx = e.clientX - pan.x, dy = e.clientY - pan.y;
      if (!pan.moved && Math.abs(dx) + Math.abs(dy) > 3) {
        // a drag: the stage takes the pointer until it is released (a click or a double
        // click without one keeps its own target: a block's title opens its call)
        pan.moved = true;
        mode = "user";
        stage.setPointerCapture(e.pointerId);
      }
      view.x = pan.vx + dx;
      view.y = pan.vy + dy;
      apply();
    }
  });
  stage.addEventListener("pointerup", (e) => {
    if (pan && !pan.moved) select(pan.call ? callId(pan.call) : "");
    pan = null;
  });

  // ---- the drawing --------------------------------------------------------------------------
  let nodeById = {};  // Graphviz node name (n3) -> the node's id (`box:linear`)
  function draw() {
    const t0 = performance.now();
    const text = model.get("svg");
    if (!text) {
      holder.replaceChildren(h("div", { class: "ncd-placeholder" }, model.get("placeholder")));
      return;
    }
    holder.innerHTML = text.slice(text.indexOf("<svg"));
    const svg = holder.querySelector("svg");
    nodeById = {};
    for (const g of svg.querySelectorAll("g.node")) {
      g.removeAttribute("title");
      const t = g.querySelector("title");
      if (t) nodeById[t.textContent] = g.id;
      // The renderer's hover text stays available as our tooltip, not the browser's.
      const a = g.querySelector("a");
      if (a) {
        g.dataset.tip = a.getAttribute("xlink:title") || "";
        a.removeAttribute("xlink:title");
      }
      if (nameOf(g.id).startsWith("\u2026")) {
        // a loose end: drawn faded and dashed, labelled `k?` (a port's name alone read as a
        // box of the user's named k), and its tip says what it stands for, not "param"
        g.classList.add("ncd-dangling");
        g.dataset.tip = looseTip(g.id, g.dataset.tip || "");
      }
    }
    for (const g of svg.querySelectorAll("g.edge")) {
      const t = g.querySelector("title");
      const [tail, head] = (t ? t.textContent : "").split("->").map((x) => x.split(":")[0]);
      g.dataset.tail = nodeById[tail] || "";
      g.dataset.head = nodeById[head] || "";
      // a loose end: a value nothing reads yet (head), or a port that reads nothing yet (tail)
      if (nameOf(g.dataset.head).startsWith("\u2026") ||
        nameOf(g.dataset.tail).startsWith("\u2026")) {
        g.classList.add("ncd-dangling");
      }
      const path = g.querySelector("path");
      if (path) {  // a wide invisible stroke, so a thin wire is easy to hit and to drop on
        const hit = path.cloneNode();
        hit.setAttribute("class", "ncd-hit");
        g.append(hit);
      }
      if (t) t.remove();
    }
    for (const g of svg.querySelectorAll("g.cluster title, g.node title")) g.remove();
    // A block's title starts where its collapse toggle is drawn (the frame's top left): it
    // moves right by the toggle's width, or the toggle hides its first letters.
    for (const t of svg.querySelectorAll("g.cluster > text[text-anchor='start']")) {
      t.setAttribute("x", String(Number(t.getAttribute("x")) + TOGGLE_ROOM));
    }
    measure(svg);
    decorate();
    place();
    reveal();
    el.dataset.version = String(model.get("version"));
    el.dataset.drawMs = String(Math.round(performance.now() - t0));
    if (sentAt) {
      el.dataset.lastMs = String(Math.round(performance.now() - sentAt));
      sentAt = 0;
    }
  }

  // What a loose end stands for: `box:…mixer:k`, port k of mixer that reads nothing yet;
  // `output:…proj`, a value that nothing reads yet (`tip`: the renderer's, which ends with
  // the value's type, `[B T D]`).
  function looseTip(id, tip) {
    const path = nameOf(id).slice(1);
    if (id.startsWith("box:")) {
      const at = path.lastIndexOf(":");
      return `port ${path.slice(at + 1)} of ${path.slice(0, at)} reads nothing yet: drag a ` +
        "value onto it (or onto the box's orange handle)";
    }
    const type = (tip.match(/\[[^\]]*\]$/) || [""])[0];
    return `${path.replace(":", ".")} ${type}: nothing reads this value yet (drag it onto ` +
      "an input, or select its box and + output)";
  }

  // Boxes of the drawing's nodes and blocks, read once per drawing: reading a box forces the
  // browser to lay the SVG out, so all are read before anything is written. A drawing not
  // laid out yet (the widget not in the page, or hidden) has no sizes: every box reads
  // (0, 0, 0, 0). It is measured once it is shown (the observer below), and until then
  // nothing is drawn over it.
  let boxes = { nodes: [], clusters: [] };
  let measured = false;
  const shown = () => el.isConnected && stage.clientWidth > 0;
  function measure(svg) {
    measured = shown();
    if (!measured) {
      boxes = { nodes: [], clusters: [] };
      return;
    }
    const nodes = [...svg.querySelectorAll("g.node")];
    const clusters = [...svg.querySelectorAll("g.cluster")];
    boxes = {
      nodes: nodes.map((g) => ({ g, id: g.id, b: g.getBBox() })),
      clusters: clusters.map((g) => ({ g, id: g.id, b: g.getBBox() })),
    };
  }

  // Handles, toggles, selection and marks: an overlay group inside the drawing, built apart
  // and added in one step.
  function decorate() {
    const svg = holder.querySelector("svg");
    if (!svg) return;
    const root = svg.querySelector("g.graph") || svg;
    root.querySelector(".ncd-overlay")?.remove();
    const over = s("g", { class: "ncd-overlay" });
    const ports = model.get("ports");
    const marks = model.get("marks");
    const sel = model.get("selected");
    // The selection's outline and the port handles of node `id` (or of an open call's frame).
    const outline = (g, id, b) => {
      const name = nameOf(id);
      g.classList.toggle("ncd-selected", id === sel);
      if (id === sel) {
        over.append(s("rect", {
          class: "ncd-sel", x: b.x - 3, y: b.y - 3, width: b.width + 6, height: b.height + 6,
          rx: 4,
        }));
      }
      const p = ports[id];
      if (p) {
        const open = new Set(p.open || []);  // ports that read nothing yet
        (p.in || []).forEach((port, i, all) => {
          const c = s("circle", {
            class: open.has(port) ? "ncd-handle ncd-in ncd-open" : "ncd-handle ncd-in",
            r: open.has(port) ? 5 : 4, cx: b.x, cy: b.y + (b.height * (i + 1)) / (all.length + 1),
            "data-node": id, "data-port": port,
          });
          const more = open.has(port) ? " (reads nothing yet: drag a value here)" : "";
          c.append(Object.assign(s("title"), { textContent: `${name}: input ${port}${more}` }));
          over.append(c);
        });
        (p.out || []).forEach((ref, i, all) => {
          const c = s("circle", {
            class: "ncd-handle ncd-out", r: 4, cx: b.x + b.width,
            cy: b.y + (b.height * (i + 1)) / (all.length + 1), "data-node": id, "data-ref": ref,
          });
          c.append(Object.assign(s("title"), { textContent: `${ref}: drag to an input` }));
          over.append(c);
        });
      }
    };
    for (const { g, id, b } of boxes.nodes) {
      outline(g, id, b);
      g.classList.toggle("ncd-bad", Boolean(marks[id]));
      if (marks[id]) {
        const m = s("g", { class: "ncd-mark", "data-node": id });
        m.append(s("circle", { cx: b.x + b.width, cy: b.y, r: 6 }));
        const tx = s("text", { x: b.x + b.width, y: b.y + 3.5, "text-anchor": "middle" });
        tx.textContent = "!";
        m.append(tx);
        m.dataset.tip = marks[id];
        over.append(m);
      }
      if (g.classList.contains("role-group") || g.classList.contains("role-call")) {
        over.append(toggle(b.x, b.y, "+", id, "expand"));
      }
    }
    for (const { g, id, b } of boxes.clusters) {
      if (g.classList.contains("block-call") && ports[callId(g)]) outline(g, callId(g), b);
      over.append(toggle(b.x + 2, b.y + 2, "−", id, "collapse"));
    }
    for (const g of svg.querySelectorAll("g.edge")) {
      g.classList.toggle("ncd-selected", g.id === sel);
    }
    root.append(over);
  }

  function toggle(x, y, sign, id, what) {
    const t = s("g", { class: "ncd-toggle", "data-path": id, "data-what": what });
    t.append(s("rect", { x: x - 1, y: y - 1, width: 11, height: 11, rx: 2 }));
    const tx = s("text", { x: x + 4.5, y: y + 8, "text-anchor": "middle" });
    tx.textContent = sign;
    t.append(tx);
    t.append(Object.assign(s("title"), { textContent: `${what} ${nameOf(id)}` }));
    return t;
  }

  function select(id) {
    model.set("selected", id);
    model.save_changes();
    if (!id.startsWith("wire:")) info.textContent = "";
    send("select", { path: id });
  }

  // ---- clicks ---------------------------------------------------------------------------------
  stage.addEventListener("click", (e) => {
    const tg = e.target.closest(".ncd-toggle");
    if (tg) {
      send("toggle", { path: tg.dataset.path });
      return;
    }
    const node = e.target.closest("g.node");
    if (node) {
      select(node.id);
      return;
    }
    const edge = e.target.closest("g.edge");
    if (edge) {
      const axis = [...edge.classList].find((c) => c.startsWith("axis-"));
      const a = axis ? axis.slice(5) : "";
      const size = model.get("axis_sizes")[a] || a;
      const ends = `from ${nameOf(edge.dataset.tail)} to ${nameOf(edge.dataset.head)}`;
      info.textContent = a ? `wire ${a}: ${size}, ${ends}` : `scalar wire ${ends}`;
      select(edge.id);
    }
  });
  stage.addEventListener("dblclick", (e) => {
    const node = e.target.closest("g.node");
    const cluster = e.target.closest("g.cluster");
    if (node) send("enter", { path: node.id });
    else if (cluster) send("enter", { path: cluster.id });
  });
  stage.addEventListener("mousemove", (e) => {
    const m = e.target.closest(".ncd-mark, g.node");
    const text = m ? m.dataset.tip || "" : "";
    const mark = m && m.classList.contains("ncd-mark");
    const node = m && !mark ? model.get("marks")[m.id] : "";
    const shown = mark ? text : node ? `${node}\n${text}` : text;
    if (!shown) {
      tip.style.display = "none";
      return;
    }
    const r = el.getBoundingClientRect();
    tip.textContent = shown;
    tip.classList.toggle("ncd-tip-bad", Boolean(mark || node));
    tip.style.display = "block";
    tip.style.left = `${e.clientX - r.left + 12}px`;
    tip.style.top = `${e.clientY - r.top + 12}px`;
  });
  stage.addEventListener("mouseleave", () => (tip.style.display = "none"));

  // ---- drags: output port -> input port; palette box -> canvas or wire -----------------------
  let line = null;
  function toDrawing(e) {
    const svg = holder.querySelector("svg");
    const root = svg.querySelector("g.graph") || svg;
    const pt = svg.createSVGPoint();
    pt.x = e.clientX;
    pt.y = e.clientY;
    return pt.matrixTransform(root.getScreenCTM().inverse());
  }
  stage.addEventListener("pointerdown", (e) => {
    const hd = e.target.closest(".ncd-handle.ncd-out");
    if (!hd || e.button !== 0) return;
    e.stopPropagation();
    e.preventDefault();
    const over = holder.querySelector(".ncd-overlay");
    line = s("line", {
      class: "ncd-drag", x1: hd.getAttribute("cx"), y1: hd.getAttribute("cy"),
      x2: hd.getAttribute("cx"), y2: hd.getAttribute("cy"),
    });
    line.dataset.ref = hd.dataset.ref;
    over.append(line);
    const move = (ev) => {
      const p = toDrawing(ev);
      line.setAttribute("x2", p.x);
      line.setAttribute("y2", p.y);
    };
    const up = (ev) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      const ref = line.dataset.ref;
      line.remove();
      line = null;
      const at = document.elementFromPoint(ev.clientX, ev.clientY);
      const target = at && at.closest(".ncd-handle.ncd-in");
      const node = at && at.closest("g.node");
      const call = at && !node && openCall(at);
      if (target) send("connect", { ref, node: target.dataset.node, port: target.dataset.port });
      else if (node) send("connect", { ref, node: node.id, port: "" });
      else if (call) send("connect", { ref, node: callId(call), port: "" });
      else if (at && stage.contains(at)) send("add_output", { name: "", ref });
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }, true);

  function startPaletteDrag(e, kind, fields = null) {
    if (e.button !== 0) return;
    e.preventDefault();
    const ghost = h("div", { class: "ncd-ghost" }, kind);
    let moved = false;
    const x0 = e.clientX, y0 = e.clientY;
    const move = (ev) => {
      if (!moved && Math.abs(ev.clientX - x0) + Math.abs(ev.clientY - y0) > 4) {
        moved = true;
        el.append(ghost);
      }
      if (moved) {
        const r = el.getBoundingClientRect();
        ghost.style.left = `${ev.clientX - r.left + 6}px`;
        ghost.style.top = `${ev.clientY - r.top + 6}px`;
        for (const g of holder.querySelectorAll("g.edge.ncd-target")) {
          g.classList.remove("ncd-target");
        }
        const at = document.elementFromPoint(ev.clientX, ev.clientY);
        const edge = at && at.closest("g.edge");
        if (edge) edge.classList.add("ncd-target");
      }
    };
    const up = (ev) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      ghost.remove();
      for (const g of holder.querySelectorAll("g.edge.ncd-target")) {
        g.classList.remove("ncd-target");
      }
      if (!moved) {  // a click: the box follows the selection (or the last value); with
        // Shift, it goes beside the selected box, reading what that box reads
        send("add", { kind, fields, beside: ev.shiftKey || e.shiftKey });
        return;
      }
      const at = document.elementFromPoint(ev.clientX, ev.clientY);
      const edge = at && at.closest("g.edge");
      const node = at && at.closest("g.node");
      if (edge) send("splice", { kind, tail: edge.dataset.tail, head: edge.dataset.head });
      else if (node) send("add", { kind, after: node.id, fields });
      else if (at && stage.contains(at)) {
        send("add", { kind, fields });
      }
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  // ---- keys -----------------------------------------------------------------------------------
  el.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select")) return;  // typing in a field
    const mod = e.ctrlKey || e.metaKey;
    let done = true;
    if (mod && e.key.toLowerCase() === "z" && e.shiftKey) send("redo");
    else if (mod && e.key.toLowerCase() === "z") send("undo");
    else if (mod && e.key.toLowerCase() === "y") send("redo");
    else if (e.key === "Delete" || e.key === "Backspace") {
      if (model.get("selected")) send("delete");
    } else if (e.key === "Escape") {
      select("");
      info.textContent = "";
    } else if (e.key === "+" || e.key === "=") {
      zoomAt(stage.clientWidth / 2, stage.clientHeight / 2, view.k * 1.2);
    } else if (e.key === "-") {
      zoomAt(stage.clientWidth / 2, stage.clientHeight / 2, view.k / 1.2);
    } else done = false;
    if (done) {
      e.preventDefault();
      e.stopPropagation();
    }
  });
  el.addEventListener("pointerdown", (e) => {
    if (!e.target.closest("input, textarea, select, button")) el.focus({ preventScroll: true });
  });

  // ---- model -> view ----------------------------------------------------------------------------
  function drawCrumbs() {
    crumbs.replaceChildren();
    model.get("crumbs").forEach((c, i, all) => {
      if (i) crumbs.append(" › ");
      const last = i === all.length - 1;
      const b = h("button", { class: last ? "ncd-crumb ncd-here" : "ncd-crumb" }, c);
      // the crumbs are drawn again: the keys stay in the widget (Ctrl+Z), not on the page
      if (!last) b.addEventListener("click", () => {
        el.focus({ preventScroll: true });
        send("crumb", { index: i });
      });
      crumbs.append(b);
    });
  }
  function drawBar() {
    name.value = model.get("name");
    title.value = model.get("title");
    undo.disabled = !model.get("can_undo");
    redo.disabled = !model.get("can_redo");
    status.textContent = model.get("status");
    status.classList.toggle("ncd-error", !model.get("status_ok"));
  }
  model.on("change:svg", draw);
  model.on("change:version", () => {
    el.dataset.version = String(model.get("version"));
    if (pending) pending.value = "";
    pending = null;
  });
  model.on("change:status", () => {
    if (!model.get("status_ok")) pending = null;
  });
  model.on("change:ports", decorate);
  model.on("change:marks", decorate);
  model.on("change:selected", () => {
    decorate();
    reveal();
  });
  model.on("change:palette", drawPalette);
  // A subcircuit opened is placed as any circuit opened; going back out, the circuit left
  // is shown as it was (its view kept, by depth, while the subcircuit was edited). The
  // drawing comes in the same message, before or after the crumbs: it is placed once both
  // are in (a microtask runs after the message's changes).
  const kept = [];
  model.on("change:crumbs", () => {
    drawCrumbs();
    const depth = model.get("crumbs").length - 1;
    if (depth > kept.length) {
      while (kept.length < depth) kept.push({ ...view, mode });
      mode = "open";
    } else if (depth < kept.length) {
      const back = kept[depth];
      kept.length = depth;
      view = { x: back.x, y: back.y, k: back.k };
      mode = back.mode;
      apply();
    } else return;
    queueMicrotask(() => {
      place();
      reveal();
    });
  });
  for (const k of ["name", "title", "can_undo", "can_redo", "status", "status_ok"]) {
    model.on(`change:${k}`, drawBar);
  }
  drawPalette();
  drawCrumbs();
  drawBar();
  draw();
  // The stage's size is known once the element is in the page and shown (render runs before
  // that): then the drawing is measured, if it was drawn unseen, and placed; and placed again
  // when the stage changes size, until the user zooms or pans.
  const observer = new ResizeObserver(() => {
    if (!shown()) return;
    const svg = holder.querySelector("svg");
    if (svg && !measured) {
      measure(svg);
      decorate();
    }
    place();
  });
  observer.observe(stage);
  return () => observer.disconnect();
}

export default { render };
