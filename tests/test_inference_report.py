"""The per-subject report: orientation (radiological), layers that can be switched off, the
threshold and model beside each probability, every lesion once in the overview."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import tiny_subject, to_orientation
from rimscope.io import load_subject
from rimscope.lesions import lesion_table
from rimscope.inference.report import VIEW, ZOOM, lesion_views, overview, view_planes, write_report


def _subject(codes="RAS", marker=None):
    """tiny_subject stored in `codes`; `marker` = (dx, dy, dz) voxel offset from lesion 1's
    centre where a bright QSM spot is put, to find it again in the pictures."""
    qsm, flair, labels, brain = tiny_subject()
    if marker is not None:
        c = np.round(ndimage.center_of_mass(labels == 1)).astype(int) + np.array(marker)
        qsm[tuple(slice(v - 1, v + 2) for v in c)] = 0.3
    imgs = []
    for arr in (qsm, flair, labels.astype(np.int16), brain.astype(np.uint8)):
        a, aff = to_orientation(arr, codes)
        imgs.append(nib.Nifti1Image(a, aff))
    return load_subject(*imgs[:3], brainmask=imgs[3], subject_id="01")


def _rows(subject, p=(0.9, 0.1, 0.6, 0.3), threshold=0.5):
    rows = []
    for les, pr in zip(lesion_table(subject.lesions, subject.affine), p):
        x, y, z = les.centroid_mm
        rows.append({"lesion_id": les.id, "volume_mm3": les.volume_mm3, "x_mm": x, "y_mm": y,
                     "z_mm": z, "rim_probability": pr, "rim": int(pr >= threshold), "flags": ""})
    return rows


def _lesion(subject, lid=1):
    return next(les for les in lesion_table(subject.lesions, subject.affine) if les.id == lid)


def _spot(plane):
    r, c = np.unravel_index(np.argmax(plane), plane.shape)
    return r / plane.shape[0], c / plane.shape[1]


@pytest.mark.parametrize("codes", ["RAS", "LPS"])
def test_planes_are_radiological_whatever_the_storage(codes):
    # a spot on the patient's left (-x in RAS) and anterior (+y) of the lesion, level with it
    s = _subject(codes, marker=(-6, 5, 0))
    axial, _, _ = view_planes(s, _lesion(s))
    r, c = _spot(axial["qsm"])
    assert c > 0.6 and r < 0.4  # axial: patient left on image right, anterior on top
    s2 = _subject(codes, marker=(-6, 0, 5))  # left and superior: coronal
    _, coronal, _ = view_planes(s2, _lesion(s2))
    r, c = _spot(coronal["qsm"])
    assert c > 0.6 and r < 0.4  # coronal: patient left on image right, superior on top
    s3 = _subject(codes, marker=(0, 6, -5))  # anterior and inferior: sagittal
    _, _, sagittal = view_planes(s3, _lesion(s3))
    r, c = _spot(sagittal["qsm"])
    assert c < 0.4 and r > 0.6  # sagittal: anterior on the left, inferior at the bottom


def test_outline_layer_spares_the_plain_qsm_row_and_rim_layer_is_optional():
    s = _subject()
    les = _lesion(s)
    views = lesion_views(s, les)
    d = VIEW.size * ZOOM
    assert views["base"].shape == (3 * VIEW.size, 3 * VIEW.size, 3)
    assert views["outline"].shape == (3 * d, 3 * d)
    assert not views["outline"][:d].any()  # first row: QSM with nothing drawn on it
    assert views["outline"][d:2 * d].any() and views["outline"][2 * d:].any()
    assert views["rim"] is None
    # a synthetic rim: the lesion's outer shell
    les_mask = s.lesions == les.id
    rim = les_mask & ~ndimage.binary_erosion(les_mask)
    views = lesion_views(s, les, rim_mask=rim)
    assert views["rim"] is not None and not views["rim"][:d].any() and views["rim"][d:].any()
    # the rim layer lies around the outline, not elsewhere in the picture
    ys, xs = np.nonzero(views["rim"][d:2 * d, :d])
    oy, ox = np.nonzero(views["outline"][d:2 * d, :d])
    assert abs(ys.mean() - oy.mean()) < 6 and abs(xs.mean() - ox.mean()) < 6


class _Model:
    name = "fake-net"
    threshold = 0.321


def test_report_threshold_model_toggles_and_overview(tmp_path):
    s = _subject()
    rows = _rows(s, threshold=_Model.threshold)
    out = tmp_path / "r.html"
    write_report(s, rows, out, model=_Model())
    html = out.read_text()
    assert html.count("(threshold 0.321, fake-net)") == len(rows)
    assert 'id="t-outline"' in html and 'id="t-rim"' not in html and 'class="ov rim"' not in html
    assert "Radiological convention" in html and "100 ppb" in html and "-100" in html
    # every lesion once in the overview, linked to its card
    for rank in range(1, len(rows) + 1):
        assert html.count(f'href="#rank-{rank}"') == 1 and f'id="rank-{rank}"' in html
    assert "http://" not in html and "https://" not in html
    rim = np.zeros(s.lesions.shape, bool)
    rim[s.lesions == 1] = True
    write_report(s, rows, out, model=_Model(), rim_mask=rim)
    html = out.read_text()
    assert 'id="t-rim"' in html and html.count('class="ov rim"') == len(rows)
    with pytest.raises(ValueError):
        write_report(s, rows, out, rim_mask=rim[:-1])


def test_overview_markers_are_radiological():
    s = _subject("LPS")
    rows = sorted(_rows(s), key=lambda r: -r["rim_probability"])
    table = {les.id: les for les in lesion_table(s.lesions, s.affine)}
    slices = overview(s, rows, table)
    marks = {m["rank"]: m for sl in slices for m in sl["markers"]}
    assert sorted(marks) == list(range(1, len(rows) + 1))
    for rank, r in enumerate(rows, start=1):
        # patient right (+x) on image left; anterior (+y) on top (tiny brain centred at 19.5, 21.5)
        assert (marks[rank]["left"] < 50) == (r["x_mm"] > 19.5)
        assert (marks[rank]["top"] < 50) == (r["y_mm"] > 21.5)
        assert marks[rank]["rim"] == r["rim"]
