"""The per-subject HTML report: every lesion ranked by rim probability, so a reader can check each
call in seconds, and a whole-brain overview that says where the lesions are.

Each lesion shows QSM without any outline (a 1-pixel contour drawn on a true rim hides it) beside
QSM and FLAIR with the lesion outline, in radiological convention with orientation letters, a
scale bar, the windows as colour bars and the operating threshold beside each probability.
Outlines (and an optional rim-voxel mask) are transparent layers over the pictures, switched on
and off in the page. Self-contained (images inline as base64 PNG, a few lines of JS) so it opens
offline and can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from scipy import ndimage

from ..io import Subject
from ..lesions import lesion_table
from ..patches import PatchConfig, patch_transform
from ..runtime import write_text_atomic

VIEW = PatchConfig(size=64, spacing_mm=0.5)  # 32 mm crops at 0.5 mm
QSM_WINDOW = (-0.1, 0.1)  # ppm: rims (+20 to +80 ppb over white matter) stand out
FIELD_WINDOW = (-0.05, 0.05)  # ppm: a phase-only subject's local field (rims' fields are weaker)
FLAIR_WINDOW = (-0.6, 1.2)  # normalised units (brain median 0, 0.5-99.5 percentile range 1)
ZOOM = 3  # display pixels per crop sample: 6 px per mm
SCALE_MM = 5
OUTLINE = (1.0, 0.25, 0.1, 1.0)
RIM = (1.0, 0.85, 0.0, 0.65)
CALL = {1: (0.95, 0.2, 0.15), 0: (0.2, 0.7, 1.0)}  # overview fill: Rim+ red, Rim- blue
ROWS = ("QSM", "QSM + outline", "FLAIR + outline")
FIELD_ROWS = ("local field", "local field + outline", "FLAIR + outline")
# panel name, (fixed patch axis, display row axis, display column axis), edge letters (l, r, t, b)
PLANES = (("axial", (2, 1, 0), "RLAP"), ("coronal", (1, 2, 0), "RLSI"), ("sagittal", (0, 2, 1), "APSI"))
OVERVIEW_SLICES = 6


def _png(image: np.ndarray) -> str:
    """Base64 PNG of an RGB or RGBA float image in [0, 1] (Pillow directly: a fraction of
    matplotlib's imsave time, which dominated the report)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png_layer(mask: np.ndarray, rgba) -> str:
    """Base64 PNG of a transparent layer with `mask` in one colour: a two-entry palette image,
    a quarter of an RGBA image's bytes to compress."""
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0] + [int(round(255 * c)) for c in rgba[:3]])
    buf = io.BytesIO()
    img.save(buf, format="png", transparency=bytes([0, int(round(255 * rgba[3]))]), compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _gray(sl: np.ndarray, window) -> np.ndarray:
    g = np.clip((sl - window[0]) / (window[1] - window[0]), 0, 1)
    return np.repeat(g[..., None], 3, axis=2)


def _plane_points(fixed: int, row_axis: int, col_axis: int, s: int) -> np.ndarray:
    """Patch indices (3, s, s) of one display plane through the centre, radiological: image rows
    run from high to low world coordinate (A or S on top); columns run from high to low (patient
    right on image left) except on the sagittal plane, where anterior is on the left."""
    pts = np.empty((3, s, s))
    pts[fixed] = s // 2
    rev = np.arange(s)[::-1]
    pts[row_axis] = rev[:, None]
    pts[col_axis] = rev[None, :]
    return pts


def view_planes(subject: Subject, lesion, rim_mask: np.ndarray | None = None) -> list[dict]:
    """The three orthogonal planes through a lesion's centroid: QSM, FLAIR, lesion mask and the
    rim mask (or None), each (S, S) in display orientation.

    The same world-axis geometry as the network's patches (`patches.patch_transform`: square
    pixels in mm whatever the voxel size or obliquity), sampled on the three planes only.
    """
    m, t = patch_transform(lesion.centroid_mm, subject.affine, VIEW)
    s = VIEW.size
    pts = [(m @ _plane_points(*axes, s).reshape(3, -1) + t[:, None]) for _, axes, _ in PLANES]
    allp = np.concatenate(pts, axis=1)
    shape = np.array(subject.flair.shape)
    lo = np.clip(np.floor(allp.min(1)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(allp.max(1)).astype(int) + 2, lo, shape)
    win = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    vols = {"qsm": (susceptibility(subject)[win], 0.0),
            "flair": (subject.flair[win], float(subject.info.get("flair_background", 0.0))),
            "lesion": ((subject.lesions[win] == lesion.id).astype(np.float32), 0.0)}
    if rim_mask is not None:
        vols["rim"] = (np.asarray(rim_mask[win], np.float32), 0.0)
    planes = [{"rim": None} for _ in pts]
    for key, (v, cval) in vols.items():  # all three planes in one call per volume
        vals = (np.full(allp.shape[1], cval, np.float32) if min(v.shape) == 0 else
                ndimage.map_coordinates(v, allp - lo[:, None], order=1, mode="grid-constant",
                                        cval=cval, prefilter=False))
        if key in ("lesion", "rim"):
            vals = vals >= 0.5 - 1e-4
        for i, plane in enumerate(planes):
            plane[key] = vals[i * s * s:(i + 1) * s * s].reshape(s, s)
    return planes


def susceptibility(subject: Subject) -> np.ndarray:
    """What the report shows in the susceptibility rows: QSM, else a phase-only subject's local field."""
    return subject.qsm if subject.qsm is not None else subject.local_field


def _zoom(a: np.ndarray) -> np.ndarray:
    return a.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def lesion_views(subject: Subject, lesion, rim_mask: np.ndarray | None = None) -> dict:
    """The pictures of one lesion, rows QSM / QSM + outline / FLAIR + outline, columns axial,
    coronal, sagittal: `base` (RGB, one pixel per 0.5 mm sample; the page enlarges it ZOOM
    times) and the layers `outline` and `rim` (bool at display size, so an outline is one display
    pixel wide; `rim` is None without a rim mask)."""
    planes = view_planes(subject, lesion, rim_mask)
    s, d = VIEW.size, VIEW.size * ZOOM
    base = np.zeros((3 * s, 3 * s, 3), np.float32)
    outline = np.zeros((3 * d, 3 * d), bool)
    rim = np.zeros((3 * d, 3 * d), bool) if rim_mask is not None else None
    bar = int(round(SCALE_MM / VIEW.spacing_mm))
    for col, pl in enumerate(planes):
        mask = _zoom(pl["lesion"])
        edge = mask & ~ndimage.binary_erosion(mask)
        sw = QSM_WINDOW if subject.qsm is not None else FIELD_WINDOW
        for row, (key, window) in enumerate((("qsm", sw), ("qsm", sw),
                                             ("flair", FLAIR_WINDOW))):
            panel = base[row * s:(row + 1) * s, col * s:(col + 1) * s]
            panel[:] = _gray(pl[key], window)
            panel[s - 4, 3:3 + bar] = 1.0  # scale bar, bottom left
            if row:
                rs, cs = slice(row * d, (row + 1) * d), slice(col * d, (col + 1) * d)
                outline[rs, cs] = edge
                if rim is not None:
                    rim[rs, cs] = _zoom(pl["rim"])
    return {"base": base, "outline": outline, "rim": rim}


def overview(subject: Subject, ranked: list[dict], table: dict) -> list[dict]:
    """A few axial FLAIR slices spanning the lesions (radiological), every lesion drawn once on
    the slice nearest its centroid, filled by call; returns per slice the PNG, its size in mm,
    its z in mm and the markers (rank, call, position in % of the picture)."""
    lesions = [table[r["lesion_id"]] for r in ranked]
    zc = np.array([les.centroid_vox[2] for les in lesions]) if lesions else np.zeros(1)
    levels = np.unique(np.round(np.linspace(zc.min(), zc.max(), OVERVIEW_SLICES)).astype(int))
    nearest = np.abs(zc[:, None] - levels[None, :]).argmin(1) if lesions else []
    brain = subject.brainmask.any(axis=2)
    xs, ys = np.nonzero(brain) if brain.any() else np.nonzero(np.ones_like(brain))
    x0 = min([max(xs.min() - 3, 0)] + [les.bbox[0].start for les in lesions])
    x1 = max([min(xs.max() + 4, brain.shape[0])] + [les.bbox[0].stop for les in lesions])
    y0 = min([max(ys.min() - 3, 0)] + [les.bbox[1].start for les in lesions])
    y1 = max([min(ys.max() + 4, brain.shape[1])] + [les.bbox[1].stop for les in lesions])
    zooms = subject.zooms
    out = []
    for li, z in enumerate(levels):
        sl = subject.flair[x0:x1, y0:y1, z]
        rgb = _gray(sl, FLAIR_WINDOW)
        markers = []
        for k, (r, les) in enumerate(zip(ranked, lesions)):
            if nearest[k] != li:
                continue
            bx, by, bz = les.bbox
            proj = (subject.lesions[bx, by, bz] == les.id).any(axis=2)
            sub = rgb[bx.start - x0:bx.stop - x0, by.start - y0:by.stop - y0]
            sub[proj] = 0.35 * sub[proj] + 0.65 * np.array(CALL[int(r["rim"])])
            cx, cy = les.centroid_vox[0] - x0, les.centroid_vox[1] - y0
            markers.append({"rank": k + 1, "rim": int(r["rim"]),
                            "left": 100 * (1 - (cx + 0.5) / (x1 - x0)),
                            "top": 100 * (1 - (cy + 0.5) / (y1 - y0))})
        img = rgb[::-1, ::-1].transpose(1, 0, 2)  # rows A->P, columns patient right -> left
        z_mm = float((subject.affine @ [(x0 + x1) / 2, (y0 + y1) / 2, z, 1])[2])  # at the centre
        out.append({"png": _png(img), "w_mm": (x1 - x0) * zooms[0], "h_mm": (y1 - y0) * zooms[1],
                    "z_mm": z_mm, "markers": markers})
    return out


def _colour_bar(window, unit_scale: float, unit: str, label: str) -> str:
    ramp = np.repeat(np.linspace(0, 1, 256)[None, :, None], 14, axis=0).repeat(3, axis=2)
    lo, hi = (round(v * unit_scale, 3) for v in window)
    return (f'<span class="cbar"><b>{label}</b> {lo:g}<img alt="{label} colour bar" '
            f'src="data:image/png;base64,{_png(ramp)}">{hi:g} {unit}</span>')


def _letters(col: int, letters: str) -> str:
    w = 100 / 3
    left, right, top, bottom = letters
    spots = ((left, f"left:{col * w + 0.6:.2f}%;top:15.5%"), (right, f"left:{(col + 1) * w - 2.6:.2f}%;top:15.5%"),
             (top, f"left:{col * w + w / 2 - 0.8:.2f}%;top:0.3%"), (bottom, f"left:{col * w + w / 2 - 0.8:.2f}%;top:29%"))
    return "".join(f'<span class="o" style="{pos}">{ch}</span>' for ch, pos in spots)


def _card(rank: int, r: dict, les, views: dict, threshold, model_name: str, rows=ROWS) -> str:
    call = "Rim+" if r["rim"] else "Rim−"
    thr = f"{threshold:.3f}" if threshold is not None else "n/a"
    layers = f'<img class="ov outline" alt="" src="data:image/png;base64,{_png_layer(views["outline"], OUTLINE)}">'
    if views["rim"] is not None:
        layers += f'<img class="ov rim" alt="" src="data:image/png;base64,{_png_layer(views["rim"], RIM)}">'
    heads = "".join(f"<span>{name}</span>" for name, _, _ in PLANES)
    labels = "".join(f'<span class="rl" style="top:{100 * i / 3 + 0.5:.2f}%">{t}</span>'
                     for i, t in enumerate(rows))
    letters = "".join(_letters(i, lt) for i, (_, _, lt) in enumerate(PLANES))
    return (f'<div class="card {"pos" if r["rim"] else "neg"}" id="rank-{rank}"><h3>#{rank} lesion '
            f'{les.id}: p = {r["rim_probability"]:.3f} <span class="thr">(threshold {thr}, '
            f'{html.escape(model_name)})</span> → {call}</h3><p>{r["volume_mm3"]:.0f} mm³ at '
            f'({r["x_mm"]:.1f}, {r["y_mm"]:.1f}, {r["z_mm"]:.1f}) mm'
            f'{" · flags: " + html.escape(r["flags"]) if r["flags"] else ""}</p>'
            f'<div class="heads">{heads}</div><div class="fig"><img class="px" alt="lesion {les.id}" '
            f'width="{3 * VIEW.size * ZOOM}" height="{3 * VIEW.size * ZOOM}" src="data:image/png;base64,{_png(views["base"])}">{layers}{labels}{letters}'
            f'<span class="sb">{SCALE_MM} mm</span></div></div>')


def _overview_html(slices: list[dict]) -> str:
    px_per_mm = 1.45
    parts = []
    for i, sl in enumerate(slices):
        marks = "".join(f'<a class="mk {"pos" if m["rim"] else "neg"}" href="#rank-{m["rank"]}" '
                        f'style="left:{m["left"]:.2f}%;top:{m["top"]:.2f}%">{m["rank"]}</a>'
                        for m in sl["markers"])
        letters = ('<span class="o" style="left:2px;top:45%">R</span><span class="o" '
                   'style="right:2px;top:45%">L</span><span class="o" style="left:47%;top:1px">A'
                   '</span><span class="o" style="left:47%;bottom:1px">P</span>')
        parts.append(f'<figure><div class="fig"><img alt="axial FLAIR z {sl["z_mm"]:.0f} mm" '
                     f'style="width:{sl["w_mm"] * px_per_mm:.0f}px;height:{sl["h_mm"] * px_per_mm:.0f}px" '
                     f'src="data:image/png;base64,{sl["png"]}">{marks}{letters}</div>'
                     f'<figcaption>z = {sl["z_mm"]:.0f} mm</figcaption></figure>')
    return "".join(parts)


STYLE = """body{font-family:system-ui,sans-serif;margin:1em 1.5em;background:#f4f4f4;color:#111}
.bar{position:sticky;top:0;background:#fff;border-bottom:1px solid #bbb;padding:.4em .6em;z-index:9;font-size:.9em}
.bar label{margin-right:1.2em} .cbar{margin-right:1.5em;white-space:nowrap} .cbar img{vertical-align:middle;margin:0 .3em;width:160px;height:12px;border:1px solid #555}
.card{display:inline-block;vertical-align:top;margin:.4em;padding:.4em;background:#fff;border:1px solid #bbb}
.card.pos{border:2px solid #c0392b} h3{margin:.15em 0;font-size:1em} .thr{font-weight:normal;color:#555}
p{margin:.2em 0;font-size:.85em} .heads{display:flex;font-size:.8em;color:#333}.heads span{flex:1;text-align:center}
.fig{position:relative;display:inline-block;line-height:0} .fig img.ov{position:absolute;left:0;top:0;width:100%;height:100%} img.px{image-rendering:pixelated}
.o,.rl,.sb{position:absolute;line-height:1;font-size:12px;font-weight:bold;color:#ffeb3b;text-shadow:0 0 2px #000}
.rl{left:.5%;color:#fff;font-weight:normal;font-size:11px;margin-top:14px} .sb{left:.6%;top:29.2%;color:#fff;font-size:10px;font-weight:normal}
.mk{position:absolute;transform:translate(-50%,-120%);font:bold 11px system-ui;color:#fff;text-decoration:none;text-shadow:0 0 3px #000}
.mk.pos{color:#ff8a80} .mk.neg{color:#80d8ff} figure{display:inline-block;margin:.3em;text-align:center}
figcaption{font-size:.8em} .hide-outline .ov.outline,.hide-rim .ov.rim{display:none}
.key{font-weight:bold} .pos-t{color:#c0392b} .neg-t{color:#1e88e5}"""

SCRIPT = """for (const [id, cls] of [['t-outline', 'hide-outline'], ['t-rim', 'hide-rim']]) {
  const box = document.getElementById(id);
  if (box) box.addEventListener('change', () => document.body.classList.toggle(cls, !box.checked));
}"""


def write_report(subject: Subject, rows: list[dict], path, model=None,
                 rim_mask: np.ndarray | None = None) -> None:
    """The report of one subject. `model` (optional) gives the name and operating threshold shown
    beside each probability; `rim_mask` (optional, bool on the subject's canonical grid) is drawn
    as its own layer with its own switch."""
    if rim_mask is not None and np.shape(rim_mask) != subject.lesions.shape:
        raise ValueError(f"rim mask shape {np.shape(rim_mask)} != subject grid {subject.lesions.shape}")
    table = {les.id: les for les in lesion_table(subject.lesions, subject.affine)}
    ranked = sorted(rows, key=lambda r: -r["rim_probability"])
    threshold = getattr(model, "threshold", None)
    model_name = str(getattr(model, "name", "model n/a"))
    qsm = subject.qsm is not None  # else a phase-only subject: its local field is shown
    cards = "".join(_card(rank, r, table[r["lesion_id"]], lesion_views(subject, table[r["lesion_id"]], rim_mask),
                          threshold, model_name, ROWS if qsm else FIELD_ROWS)
                    for rank, r in enumerate(ranked, start=1))
    made = subject.info.get("phase", {}).get("qsm_from_phase")
    sus = ("QSM" + (f" (TKD {made['threshold']} of the phase, what the model read)" if made else "")
           if qsm else "local field")
    n_rim = sum(r["rim"] for r in rows)
    thr = f"{threshold:.3f}" if threshold is not None else "n/a"
    rim_toggle = ('<label><input type="checkbox" id="t-rim" checked> rim voxels '
                  '<span style="color:#e6b800">■</span></label>' if rim_mask is not None else "")
    sid = html.escape(subject.id)
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>rimscope: sub-{sid}</title><style>{STYLE}</style></head><body>
<h1>sub-{sid}: {n_rim} Rim+ of {len(rows)} lesions</h1>
<p>Model <b>{html.escape(model_name)}</b>, operating threshold <b>{thr}</b> (Rim+ when p ≥ threshold).
Research use only: trained on simulated data; check every call.
<b>Radiological convention:</b> patient's left on image right in axial and coronal views; sagittal
views have anterior on the left. Letters mark the patient's directions (R/L, A/P, S/I).</p>
<div class="bar"><label><input type="checkbox" id="t-outline" checked> lesion outline
<span style="color:#ff4019">■</span></label>{rim_toggle}
{_colour_bar(QSM_WINDOW if qsm else FIELD_WINDOW, 1000, "ppb", "QSM" if qsm else "local field")}{_colour_bar(FLAIR_WINDOW, 1, "(brain median 0, robust range 1)", "FLAIR")}</div>
<h2>Overview</h2><p>Axial FLAIR slices spanning the lesions; each lesion is drawn once, on the slice
nearest its centre (all its voxels projected), <span class="pos-t key">red: Rim+</span>,
<span class="neg-t key">blue: Rim−</span>; numbers are the ranks below (click to jump).</p>
{_overview_html(overview(subject, ranked, table))}
<h2>Lesions, ranked by rim probability</h2><p>Each lesion: axial, coronal and sagittal planes through
its centre, 32 mm across; first row {sus} with nothing drawn on it (paramagnetic bright), then {sus}
and FLAIR with the lesion outline; the bar is {SCALE_MM} mm.</p>
{cards}
<script>{SCRIPT}</script>
</body></html>
"""
    write_text_atomic(path, doc)
