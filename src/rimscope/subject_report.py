"""The per-subject HTML report: every lesion ranked by rim probability, with orthogonal QSM and
FLAIR crops and the lesion's contour, so a reader can check each call in seconds.

Self-contained (images inline as base64 PNG) so it opens offline and can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from scipy import ndimage

from .io import Subject
from .lesions import lesion_table
from .runtime import write_text_atomic

CROP_MM = 32.0
QSM_WINDOW = (-0.15, 0.15)  # ppm
FLAIR_WINDOW = (-0.6, 1.2)  # normalised units
ZOOM = 4


def _png(rgb: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image as mpimg

    buf = io.BytesIO()
    mpimg.imsave(buf, rgb, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _gray(sl: np.ndarray, window) -> np.ndarray:
    g = np.clip((sl - window[0]) / (window[1] - window[0]), 0, 1)
    return np.repeat(g[..., None], 3, axis=2)


def _contour(mask2d: np.ndarray) -> np.ndarray:
    return mask2d & ~ndimage.binary_erosion(mask2d)


def lesion_views(subject: Subject, lesion_id: int, centre_vox, half_vox) -> np.ndarray:
    """One RGB strip: axial, coronal, sagittal of QSM (top) and FLAIR (bottom) with the contour."""
    c = np.round(centre_vox).astype(int)
    lo = np.maximum(c - half_vox, 0)
    hi = np.minimum(c + half_vox + 1, subject.qsm.shape)
    win = tuple(slice(a, b) for a, b in zip(lo, hi))
    q, f, m = subject.qsm[win], subject.flair[win], subject.lesions[win] == lesion_id
    cc = c - lo
    rows = []
    for vol, window in ((q, QSM_WINDOW), (f, FLAIR_WINDOW)):
        panels = []
        for axis in (2, 1, 0):  # axial (z), coronal (y), sagittal (x)
            idx = [slice(None)] * 3
            idx[axis] = int(np.clip(cc[axis], 0, vol.shape[axis] - 1))
            sl = np.rot90(vol[tuple(idx)])
            ms = np.rot90(m[tuple(idx)])
            rgb = _gray(sl, window)
            rgb[_contour(ms)] = (1.0, 0.2, 0.1)
            side = int((2 * half_vox + 1).max())
            canvas = np.zeros((side, side, 3))
            canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
            panels.append(canvas)
        rows.append(np.concatenate(panels, axis=1))
    img = np.concatenate(rows, axis=0)
    return np.kron(img, np.ones((ZOOM, ZOOM, 1)))


def write_report(subject: Subject, rows: list[dict], path) -> None:
    table = {les.id: les for les in lesion_table(subject.lesions, subject.affine)}
    half = np.ceil(CROP_MM / 2 / subject.zooms).astype(int)
    ranked = sorted(rows, key=lambda r: -r["rim_probability"])
    cards = []
    for rank, r in enumerate(ranked, start=1):
        les = table[r["lesion_id"]]
        png = _png(lesion_views(subject, les.id, les.centroid_vox, half))
        call = "Rim+" if r["rim"] else "Rim−"
        cards.append(
            f'<div class="card {"pos" if r["rim"] else "neg"}"><h3>#{rank} lesion {les.id}: '
            f'p = {r["rim_probability"]:.3f} ({call})</h3><p>{r["volume_mm3"]:.0f} mm³ at '
            f'({r["x_mm"]:.1f}, {r["y_mm"]:.1f}, {r["z_mm"]:.1f}) mm'
            f'{" · flags: " + html.escape(r["flags"]) if r["flags"] else ""}</p>'
            f'<img alt="lesion {les.id}" src="data:image/png;base64,{png}"></div>')
    n_rim = sum(r["rim"] for r in rows)
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>rimscope: sub-{html.escape(subject.id)}</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}
.card{{display:inline-block;vertical-align:top;margin:.5em;padding:.5em;background:#fff;border:1px solid #ccc}}
.card.pos{{border:2px solid #c0392b}} h3{{margin:.2em 0;font-size:1em}} p{{margin:.2em 0;font-size:.85em}}
</style></head><body>
<h1>sub-{html.escape(subject.id)}: {n_rim} Rim+ of {len(rows)} lesions</h1>
<p>Lesions ranked by rim probability. Each picture: axial, coronal, sagittal through the lesion
centroid; top QSM (window {QSM_WINDOW[0]}..{QSM_WINDOW[1]} ppm, paramagnetic bright), bottom FLAIR;
red: lesion contour. Research use only: trained on simulated data; check every call.</p>
{''.join(cards)}
</body></html>
"""
    write_text_atomic(path, doc)
