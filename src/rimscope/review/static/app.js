// rimscope review page: a list of lesions, six server-rendered views, keyboard rating.
// No framework and no build step, so the page works offline and can be read in one sitting.
"use strict";

const ORIENT = {  // radiological display, as rendered by the server (views.py)
  axial: ["A", "R", "L"], coronal: ["S", "R", "L"], sagittal: ["S", "A", "P"],
};
const LABEL = { "rim+": "Rim+", "rim-": "Rim−", unsure: "unsure" };
const RATER_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$/;

const state = {
  meta: null, lesions: [], index: 0, detail: null, offsets: {}, active: "axial",
  windows: {}, saved: 0, busy: false,
};
const $ = (sel, root = document) => root.querySelector(sel);

async function api(path, options = {}) {
  const res = await fetch(path, { credentials: "same-origin", ...options });
  if (!res.ok) {
    let msg = res.status + "";
    try { msg += ": " + (await res.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res.json();
}

function status(text, error = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function rater() { return $("#rater").value.trim(); }

async function loadList(keep) {
  if (!RATER_RE.test(rater()) || rater().toLowerCase() === "model") {
    status("rater name: 1-40 letters, digits or _ . @ - (not 'model')", true);
    return;
  }
  const q = new URLSearchParams({ order: $("#order").value, rater: rater() });
  const data = await api("/api/lesions?" + q);
  state.lesions = data.lesions;
  if (keep) {
    const i = state.lesions.findIndex(l => l.subject === keep.subject && l.lesion_id === keep.lesion_id);
    state.index = i >= 0 ? i : 0;
  }
  drawList();
}

function drawList() {
  const nav = $("#list");
  nav.replaceChildren();
  state.lesions.forEach((l, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.index = i;
    b.className = i === state.index ? "current" : "";
    const name = document.createElement("span");
    name.textContent = `sub-${l.subject} #${l.lesion_id}`;
    const p = document.createElement("span");
    p.className = "p";
    p.textContent = l.probability == null ? "" : "p=" + l.probability.toFixed(2);
    const badge = document.createElement("span");
    badge.className = "badge " + (l.rating || "");
    badge.textContent = l.rating ? LABEL[l.rating] : "";
    b.append(name, p, badge);
    b.addEventListener("click", () => select(i));
    nav.append(b);
  });
  const done = state.lesions.filter(l => l.rating).length;
  $("#progress").textContent = `${done} / ${state.lesions.length} rated by ${rater()}`;
  const cur = nav.children[state.index];
  if (cur) cur.scrollIntoView({ block: "nearest" });
}

async function select(i) {
  if (!state.lesions.length) return;
  state.index = Math.max(0, Math.min(state.lesions.length - 1, i));
  drawList();
  const l = state.lesions[state.index];
  const q = new URLSearchParams({ subject: l.subject, lesion_id: l.lesion_id });
  try {
    state.detail = await api("/api/lesion?" + q);
  } catch (e) {
    status(`sub-${l.subject} #${l.lesion_id}: ${e.message}`, true);
    return;
  }
  state.offsets = { axial: 0, coronal: 0, sagittal: 0 };
  drawInfo();
  drawViews();
}

function drawInfo() {
  const d = state.detail;
  const others = d.ratings.map(r => `${r.rater}: ${LABEL[r.rating]}`).join(", ") || "none yet";
  const vol = d.volume_mm3 == null ? "?" : d.volume_mm3.toFixed(0);
  $("#info").replaceChildren();
  const b = document.createElement("b");
  b.textContent = `sub-${d.subject} lesion ${d.lesion_id}`;
  const model = d.probability == null ? "" : ` — model p = ${d.probability.toFixed(3)} (${d.rim ? "Rim+" : "Rim−"})`;
  const rated = state.meta.blind ? "" : ` — ratings: ${others}`;
  $("#info").append(b, `${model} — ${vol} mm³${d.flags ? ", " + d.flags : ""}${rated}`);
}

function viewUrl(modality, plane) {
  const l = state.lesions[state.index];
  const w = state.windows[modality];
  const q = new URLSearchParams({
    subject: l.subject, lesion_id: l.lesion_id, modality, plane,
    offset: state.offsets[plane], vmin: w[0], vmax: w[1], contour: $("#contour").checked ? "1" : "0",
  });
  return "/api/view?" + q;
}

function drawViews(only) {
  if (!state.detail) return;
  document.querySelectorAll("figure.view").forEach(fig => {
    const { modality, plane } = fig.dataset;
    if (only && plane !== only) return;
    let img = $("img", fig);
    if (!img) {
      const [top, left, right] = ORIENT[plane];
      fig.innerHTML = "";
      img = document.createElement("img");
      img.alt = `${modality} ${plane}`;
      fig.append(img);
      for (const [cls, txt] of [["top", top], ["left", left], ["right", right]]) {
        const s = document.createElement("span");
        s.className = "o " + cls;
        s.textContent = txt;
        fig.append(s);
      }
      fig.append(document.createElement("figcaption"));
      fig.addEventListener("click", () => setActive(plane));
      fig.addEventListener("wheel", ev => { ev.preventDefault(); scroll(plane, ev.deltaY > 0 ? -1 : 1); },
        { passive: false });
    }
    img.src = viewUrl(modality, plane);
    const off = state.offsets[plane];
    $("figcaption", fig).textContent = `${plane} ${off > 0 ? "+" : ""}${off} vox`;
    fig.classList.toggle("active", plane === state.active);
  });
}

function setActive(plane) { state.active = plane; drawViews(); }

function scroll(plane, step) {
  if (!state.detail) return;
  const lim = state.detail.max_offset[plane];
  const next = Math.max(-lim, Math.min(lim, state.offsets[plane] + step));
  if (next !== state.offsets[plane]) { state.offsets[plane] = next; drawViews(plane); }
}

async function rate(rating) {
  const l = state.lesions[state.index];
  if (!l || state.busy) return;
  state.busy = true;
  const body = { subject: l.subject, lesion_id: l.lesion_id, rating, rater: rater(),
                 confidence: rating === "unsure" ? null : parseFloat($("#confidence").value) };
  try {
    await api("/api/rate", { method: "POST", headers: { "Content-Type": "application/json" },
                             body: JSON.stringify(body) });
    l.rating = rating;
    state.saved += 1;
    status(`saved: sub-${l.subject} #${l.lesion_id} ${LABEL[rating]} (${rater()})`);
    loadAgreement();
    // keys stay ignored until the next lesion is shown: nobody rates a lesion they have not seen
    if (state.index < state.lesions.length - 1) await select(state.index + 1); else drawList();
    $("#status").dataset.saved = state.saved;
  } catch (e) {
    status("NOT saved: " + e.message, true);
  } finally {
    state.busy = false;
  }
}

async function loadAgreement() {
  if (state.meta.blind) return;
  let data;
  try {
    data = await api("/api/agreement");
  } catch (e) {  // agreement is a side panel: say so, never break rating
    status("agreement not updated: " + e.message, true);
    return;
  }
  const tbody = $("#agreement tbody");
  tbody.replaceChildren();
  for (const p of data.pairs) {
    const tr = document.createElement("tr");
    const k = p.kappa == null ? "n/a" : (Math.abs(p.kappa) < 0.005 ? 0 : p.kappa).toFixed(2);
    const cells = [p.a, p.b, p.n, k,
                   p.agreement == null ? "n/a" : (100 * p.agreement).toFixed(0) + " %"];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    tbody.append(tr);
  }
}

function setupWindows() {
  document.querySelectorAll("#windows fieldset").forEach(fs => {
    const m = fs.dataset.modality;
    const [lo, hi] = state.meta.windows[m];
    const vmin = $(".vmin", fs), vmax = $(".vmax", fs);
    const apply = () => {
      const a = parseFloat(vmin.value), b = parseFloat(vmax.value);
      if (!(a < b)) { status("window: min must be below max", true); return; }
      state.windows[m] = [a, b];
      drawViews();
    };
    const reset = () => { vmin.value = lo; vmax.value = hi; apply(); };
    vmin.addEventListener("change", apply);
    vmax.addEventListener("change", apply);
    $(".reset", fs).addEventListener("click", reset);
    vmin.value = lo; vmax.value = hi; state.windows[m] = [lo, hi];
  });
}

function onKey(ev) {
  if (ev.target.matches("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = {
    "1": () => rate("rim+"), "0": () => rate("rim-"), u: () => rate("unsure"), U: () => rate("unsure"),
    ArrowRight: () => select(state.index + 1), ArrowLeft: () => select(state.index - 1),
    ArrowUp: () => scroll(state.active, 1), ArrowDown: () => scroll(state.active, -1),
    c: () => { $("#contour").checked = !$("#contour").checked; drawViews(); },
  };
  const fn = keys[ev.key];
  if (fn) { ev.preventDefault(); fn(); }
}

async function main() {
  try {
    state.meta = await api("/api/meta");
  } catch (e) {
    status("cannot reach the server: " + e.message + " (open the URL printed at start)", true);
    return;
  }
  $("#rater").value = localStorage.getItem("rimscope.rater") || state.meta.default_rater;
  setupWindows();
  if (state.meta.blind) {  // nothing on the page may sway an independent rating
    $("#order").value = "subject";
    $("#agreement-section").hidden = true;
    document.title += " (blind)";
  }
  $("#rater").addEventListener("change", async () => {
    if (RATER_RE.test(rater())) localStorage.setItem("rimscope.rater", rater());
    await loadList(state.lesions[state.index]);
  });
  $("#order").addEventListener("change", async () => { await loadList(); await select(0); });
  $("#contour").addEventListener("change", () => drawViews());
  document.addEventListener("keydown", onKey);
  await loadList();
  await select(0);
  loadAgreement();
}

main();
