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

from ..io import Subject
from ..lesions import lesion_table
from ..patches import PatchConfig, sample_patch
from ..runtime import write_text_atomic

VIEW = PatchConfig(size=64, spacing_mm=0.5)  # 32 mm crops at 0.5 mm
QSM_WINDOW = (-0.15, 0.15)  # ppm
FLAIR_WINDOW = (-0.6, 1.2)  # normalised units
ZOOM = 2


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


def lesion_views(subject: Subject, lesion) -> np.ndarray:
    """One RGB picture: axial, coronal, sagittal of QSM (top) and FLAIR (bottom), contour in red.

    Crops come from the same world-axis sampler as the network's patches (square pixels in mm
    whatever the voxel size or obliquity), just larger and finer for the eye.
    """
    x, _ = sample_patch(subject, lesion, VIEW)
    c = VIEW.size // 2
    rows = []
    for ch, window in ((0, QSM_WINDOW), (1, FLAIR_WINDOW)):
        panels = []
        for axis in (2, 1, 0):  # axial (z), coronal (y), sagittal (x)
            idx = [slice(None)] * 3
            idx[axis] = c
            sl = np.rot90(x[ch][tuple(idx)])
            ms = np.rot90(x[2][tuple(idx)] > 0.5)
            rgb = _gray(sl, window)
            rgb[_contour(ms)] = (1.0, 0.2, 0.1)
            panels.append(rgb)
        rows.append(np.concatenate(panels, axis=1))
    return np.kron(np.concatenate(rows, axis=0), np.ones((ZOOM, ZOOM, 1)))


def write_report(subject: Subject, rows: list[dict], path) -> None:
    table = {les.id: les for les in lesion_table(subject.lesions, subject.affine)}
    ranked = sorted(rows, key=lambda r: -r["rim_probability"])
    cards = []
    for rank, r in enumerate(ranked, start=1):
        les = table[r["lesion_id"]]
        png = _png(lesion_views(subject, les))
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
