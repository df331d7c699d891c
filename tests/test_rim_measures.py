"""rim_measures and rim_segment on tiny volumes where the rim is known exactly.

Phantoms: a sphere lesion (radius 6 mm) in a uniform surround of +10 ppb, a core of -20 ppb and
an inside shell of +50 ppb over the surround, 2 mm thick (the simulator's rims sit mostly
inside the edge), covering the whole edge or exactly one half (the sphere is centred between
voxels, so the two halves are mirror images). Tolerances: susceptibilities are exact (every rim
voxel holds the same value, the surround median is the surround value), coverage is exact up to
the majority filter at the cut (0.500 measured, 0.03 allowed), thickness is volume / mid-surface
area on a 1 mm digital sphere of radius 6 mm, where the digital shell volume and the smoothed
area are each a few % off (1.93-1.97 mm measured for 2 mm; 0.2 mm allowed, 0.3 mm at 0.75 x 0.75
x 1.5 mm).
"""
from __future__ import annotations

import numpy as np
import pytest

from rimscope.lesions import lesion_table
from rimscope.patches import PatchConfig, patch_transform
from rimscope.rim_measures import COLUMNS, measure_lesion, measure_subject, rounded
from rimscope.rim_segment import analytic_rim_mask, patch_probs_to_native, rim_mask_from_probability

SUR, CORE, RIM = 0.010, -0.010, 0.060  # ppm: rim +50 ppb, core -20 ppb over the surround


def sphere_phantom(zooms=(1.0, 1.0, 1.0), extent_mm=36.0, r=6.0, thickness=2.0, half=False,
                   outside=False):
    zooms = np.asarray(zooms, float)
    shape = tuple(int(round(extent_mm / z)) for z in zooms)
    c = (np.array(shape) - 1) / 2.0 * zooms  # between voxel centres (even shape)
    pts = np.indices(shape).transpose(1, 2, 3, 0) * zooms
    rho = np.linalg.norm(pts - c, axis=-1)
    lesion = rho <= r
    s = rho - r  # continuous signed distance to the true surface
    rim = (s > 0) & (s <= thickness) if outside else (s <= 0) & (s > -thickness)
    if half:
        rim &= pts[..., 0] > c[0]
    qsm = np.full(shape, SUR, np.float32)
    qsm[lesion] = CORE
    qsm[rim] = RIM
    labels = lesion.astype(np.int32)
    return qsm, labels, rim, zooms


def test_full_rim_known_exactly():
    qsm, labels, rim, z = sphere_phantom()
    m = measure_lesion(qsm, labels, rim, 1, z)
    assert set(m) == set(COLUMNS)
    assert m["rim_susceptibility_ppb"] == pytest.approx(50.0, abs=1e-3)
    assert m["core_susceptibility_ppb"] == pytest.approx(-20.0, abs=1e-3)
    assert m["rim_volume_mm3"] == pytest.approx(rim.sum())
    assert m["rim_coverage"] == pytest.approx(1.0, abs=1e-9)
    assert m["rim_thickness_mm"] == pytest.approx(2.0, abs=0.2)


def test_half_rim_reads_half_the_edge_and_the_same_thickness():
    qsm, labels, rim, z = sphere_phantom(half=True)
    m = measure_lesion(qsm, labels, rim, 1, z)
    assert m["rim_coverage"] == pytest.approx(0.5, abs=0.03)
    assert m["rim_susceptibility_ppb"] == pytest.approx(50.0, abs=1e-3)
    assert m["rim_thickness_mm"] == pytest.approx(2.0, abs=0.2)


def test_rim_outside_the_edge_still_covers_it():
    qsm, labels, rim, z = sphere_phantom(outside=True, thickness=1.5)
    m = measure_lesion(qsm, labels, rim, 1, z)
    assert m["rim_coverage"] >= 0.95
    assert m["rim_susceptibility_ppb"] == pytest.approx(50.0, abs=1e-3)
    assert m["rim_thickness_mm"] == pytest.approx(1.5, abs=0.2)


def test_anisotropic_voxels_measure_the_same_rim():
    """0.75 x 0.75 x 1.5 mm: the definitions are in millimetres, not voxels."""
    qsm, labels, rim, z = sphere_phantom(zooms=(0.75, 0.75, 1.5))
    m = measure_lesion(qsm, labels, rim, 1, z)
    assert m["rim_coverage"] == pytest.approx(1.0, abs=1e-9)
    assert m["rim_susceptibility_ppb"] == pytest.approx(50.0, abs=1e-3)
    assert m["rim_volume_mm3"] == pytest.approx(rim.sum() * 0.75 * 0.75 * 1.5)
    assert m["rim_thickness_mm"] == pytest.approx(2.0, abs=0.3)


def test_no_rim_gives_empty_rim_columns_and_a_core():
    qsm, labels, rim, z = sphere_phantom()
    qsm[rim] = CORE
    for mask in (None, np.zeros_like(rim)):
        m = measure_lesion(qsm, labels, mask, 1, z)
        assert all(m[k] is None for k in COLUMNS if k != "core_susceptibility_ppb")
        assert m["core_susceptibility_ppb"] == pytest.approx(-20.0, abs=1e-3)
    row = rounded(measure_lesion(qsm, labels, None, 1, z))
    assert row["rim_coverage"] is None and isinstance(row["core_susceptibility_ppb"], float)


def test_neighbour_rim_is_neither_counted_nor_in_the_surround():
    """Two lesions 6 mm apart: lesion 2's bright rim lies in lesion 1's surround band and within
    4 mm of it, yet belongs to lesion 2 (nearer) and is excluded from lesion 1's surround."""
    shape = (48, 28, 28)
    pts = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    qsm = np.full(shape, SUR, np.float32)
    labels = np.zeros(shape, np.int32)
    rim = np.zeros(shape, bool)
    for lid, cx in ((1, 14.5), (2, 30.5)):
        rho = np.linalg.norm(pts - [cx, 13.5, 13.5], axis=-1)
        labels[rho <= 5] = lid
        qsm[rho <= 5] = CORE
        if lid == 2:
            rim |= (rho > 5) & (rho <= 7)  # outside rim: it reaches to 2.5 mm of lesion 1 (by 6.5)
    qsm[rim] = 0.2  # very bright: would move a mean-based or rim-including surround
    res = measure_subject(qsm, labels, rim, (1.0, 1.0, 1.0))
    assert res[1]["rim_volume_mm3"] is None
    assert res[1]["core_susceptibility_ppb"] == pytest.approx(-20.0, abs=1e-3)
    assert res[2]["rim_susceptibility_ppb"] == pytest.approx(190.0, abs=1e-3)
    assert res[2]["rim_coverage"] >= 0.95


def test_analytic_rim_finds_a_noisy_half_rim():
    """The rule on a half rim with 5 ppb voxel noise: high Dice, no voxel on the Rim- side."""
    rng = np.random.default_rng(0)
    qsm, labels, rim, z = sphere_phantom(half=True)
    qsm = qsm + rng.normal(0, 0.005, qsm.shape).astype(np.float32)
    pred = analytic_rim_mask(qsm, labels, z)
    dice = 2 * (pred & rim).sum() / (pred.sum() + rim.sum())
    assert dice > 0.8
    centre_x = (qsm.shape[0] - 1) / 2
    xs = np.argwhere(pred)[:, 0]
    assert (xs < centre_x - 1.5).sum() == 0
    clean = qsm.copy()
    clean[rim] = CORE
    assert not analytic_rim_mask(clean, labels, z).any()


def test_analytic_rim_drops_small_specks():
    qsm, labels, rim, z = sphere_phantom()
    qsm[rim] = CORE
    qsm[18, 18, 25] = 0.2  # one bright voxel at the edge (1 mm3 < min 3 mm3)
    assert not analytic_rim_mask(qsm, labels, z, smooth_mm=0.0).any()


def test_patch_probabilities_map_back_to_native_voxels():
    """A known function painted in patch space comes back at the right native voxels, on an
    anisotropic oblique-free grid; voxels nearer another lesion or far away stay 0."""
    shape = (40, 40, 24)
    zooms = np.array([0.8, 0.8, 1.6])
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [-10.0, 4.0, 2.0]
    pts = np.indices(shape).transpose(1, 2, 3, 0) * zooms
    labels = np.zeros(shape, np.int32)
    labels[np.linalg.norm(pts - [12, 16, 19], axis=-1) <= 4] = 1
    labels[np.linalg.norm(pts - [22, 16, 19], axis=-1) <= 3] = 2
    lesions = lesion_table(labels, affine)
    cfg = PatchConfig()
    probs = np.zeros((2, 32, 32, 32), np.float32)
    ijk = np.indices((32, 32, 32)).astype(float)
    probs[0] = (ijk[0] / 31.0).astype(np.float32)  # a ramp along the patch's first (x) axis
    probs[1] = 1.0
    out = patch_probs_to_native(probs, lesions, labels, affine, zooms, cfg)
    m, t = patch_transform(lesions[0].centroid_mm, affine, cfg)
    vox = np.array([12 / 0.8 + 2, 16 / 0.8, 19 / 1.6])  # inside lesion 1, 1.6 mm off its centre
    vox = np.round(vox).astype(int)
    expect = np.linalg.solve(m, vox - t)[0] / 31.0
    assert out[tuple(vox)] == pytest.approx(expect, abs=1e-4)
    assert labels[tuple(vox)] in (0, 1)
    assert np.all(out[labels == 2] == 1.0) and np.all(out[labels == 1] < 1.0)
    far = np.linalg.norm(pts - [12, 16, 19], axis=-1) > 4 + 4.0 + 1e-6
    far &= np.linalg.norm(pts - [22, 16, 19], axis=-1) > 3 + 4.0 + 1e-6
    assert not out[far].any()
    mask = rim_mask_from_probability(out)
    assert mask[labels == 2].all() and mask.dtype == bool
    with pytest.raises(ValueError):
        patch_probs_to_native(probs[:1], lesions, labels, affine, zooms, cfg)


def test_rim_truth_is_recorded_without_changing_the_lesion_render():
    """render_lesion with rim_out paints the same χ/FLAIR and draws the same random numbers (so a
    seed's images are unchanged), and the truth sits where the rim's χ went."""
    from rimscope.simulate.acquisition import ModelGrid
    from rimscope.simulate.config import SimConfig
    from rimscope.simulate.lesions_model import Placed, render_lesion

    n = 40
    grid = ModelGrid(np.zeros(3), 1.0, (n, n, n))
    r = np.sqrt(((np.indices((n, n, n)) - 20) ** 2).sum(0))
    p = Placed(None, tuple(slice(14, 27) for _ in range(3)), (r <= 5.0)[14:27, 14:27, 14:27])
    runs = []
    for rim_out in (None, np.zeros((n, n, n), np.float32)):
        p.truth = dict(kind="rim", core_type="iso", core_ppm=0.0, coverage=0.5, rim_ppm=0.05,
                       rim_thickness_mm=1.5, central_vein=False)
        chi, fl = np.zeros((n, n, n), np.float32), np.ones((n, n, n), np.float32)
        rng = np.random.default_rng(3)
        render_lesion(p, grid, chi, fl, rng, SimConfig(), 0.5, rim_out=rim_out)
        runs.append((chi, fl, rng.random(), rim_out))
    (c0, f0, u0, _), (c1, f1, u1, rim) = runs
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_array_equal(f0, f1)
    assert u0 == u1
    truth = rim >= 0.5
    assert truth.any() and rim.max() <= 1.0
    assert c1[truth].mean() > 0.03 and np.abs(c1[(rim == 0) & (r > 7)]).max() == 0
    les = r <= 5.0
    edge = les & ~np.pad(les[1:-1, 1:-1, 1:-1] & les[2:, 1:-1, 1:-1] & les[:-2, 1:-1, 1:-1]
                         & les[1:-1, 2:, 1:-1] & les[1:-1, :-2, 1:-1] & les[1:-1, 1:-1, 2:]
                         & les[1:-1, 1:-1, :-2], 1)
    assert abs(p.truth["coverage"] - 0.5) < 0.1  # realised coverage, recorded in the truth
    assert abs(truth[edge].mean() - p.truth["coverage"]) < 0.15  # ...is what the truth mask shows


@pytest.mark.slow
def test_simulated_subject_carries_rim_truth_near_its_rim_lesions(tmp_path):
    from rimscope.simulate.cohort_writer import rimtruth_path, write_subject
    from rimscope.simulate.config import SimConfig
    from rimscope.simulate.subject import simulate_subject

    cfg = SimConfig(crop_mm=80, model_mm=1.0, voxel_mm=[0.9, 1.0], n_veins=[3, 6],
                    n_medullary=[2, 4], lesions_median=10, p_subject_rim_free=0.0)
    s = simulate_subject(cfg, 11, 1)
    z = np.sqrt((s.qsm_affine[:3, :3] ** 2).sum(0))
    res = measure_subject(s.qsm, s.lesions, s.rim.astype(bool), z)
    with_rim = [t for t in s.truth["lesions"] if t["rim_ppm"] > 0]
    assert with_rim
    for t in s.truth["lesions"]:
        has = res[t["lesion_id"]]["rim_volume_mm3"] is not None
        assert has == (t["rim_ppm"] > 0) or t["kind"] == "vein_touch"
    write_subject(tmp_path, "001", s, True)
    import nibabel as nib
    img = nib.load(tmp_path / rimtruth_path("001"))
    np.testing.assert_array_equal(np.asarray(img.dataobj), s.rim)
    np.testing.assert_allclose(img.affine, s.qsm_affine)
