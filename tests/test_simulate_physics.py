"""Dipole physics of the simulator against analytic solutions and symmetry."""
from __future__ import annotations

import numpy as np
import pytest

from rimscope.simulate import physics


def _sphere(n=96, radius=6.0, zooms=(1.0, 1.0, 1.0), sub=4):
    """Uniform sphere with partial-volume edges (supersampled), centred in the grid."""
    zooms = np.asarray(zooms, float)
    c = (n - 1) / 2
    chi = np.zeros((n, n, n), np.float32)
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    idx = np.indices((n, n, n)).astype(np.float32)
    for ox in offs:
        for oy in offs:
            for oz in offs:
                r2 = sum(((idx[i] + o - c) * zooms[i]) ** 2 for i, o in enumerate((ox, oy, oz)))
                chi += (r2 <= radius ** 2)
    chi /= sub ** 3
    coords = np.moveaxis((idx - c) * zooms[:, None, None, None], 0, -1)
    return chi, coords


@pytest.mark.parametrize("b0", [(0, 0, 1), (0.3, -0.2, 0.93)])
def test_sphere_field_matches_analytic_outside(b0):
    chi, coords = _sphere()
    field = physics.forward_field(chi * 0.1, (1, 1, 1), b0, pad_frac=1.0)
    ana = physics.sphere_field_analytic(coords, 6.0, 0.1, b0)
    r = np.linalg.norm(coords, axis=-1)
    out = (r > 7.5) & (r < 20)
    err = np.linalg.norm(field[out] - ana[out]) / np.linalg.norm(ana[out])
    assert err <= 0.05, err
    # and it is not trivially satisfied: the wrong B0 axis fails
    wrong = physics.forward_field(chi * 0.1, (1, 1, 1), (1, 0, 0), pad_frac=1.0)
    if tuple(b0) == (0, 0, 1):
        assert np.linalg.norm(wrong[out] - ana[out]) / np.linalg.norm(ana[out]) > 0.5


def test_rotating_chi_and_b0_rotates_field():
    rng = np.random.default_rng(0)
    chi = np.zeros((40, 48, 36), np.float32)
    chi[10:22, 14:30, 8:16] = 0.05
    chi[25:30, 20:24, 20:30] = -0.03
    chi += rng.normal(0, 0.005, chi.shape).astype(np.float32)
    zooms = (0.8, 1.0, 1.5)
    b0 = np.array([0.2, 0.35, 0.9])
    f = physics.forward_field(chi, zooms, b0)
    # swap axes 1 and 2 (an orthogonal transform): field, voxel sizes and B0 swap with them
    f_sw = physics.forward_field(np.ascontiguousarray(chi.transpose(0, 2, 1)), (0.8, 1.5, 1.0), b0[[0, 2, 1]])
    np.testing.assert_allclose(f_sw, f.transpose(0, 2, 1), atol=2e-5)
    # flip axis 0: B0's x component changes sign
    b0f = b0 * np.array([-1, 1, 1])
    f_fl = physics.forward_field(np.ascontiguousarray(chi[::-1]), zooms, b0f)
    np.testing.assert_allclose(f_fl[1:-1], f[::-1][1:-1], atol=5e-4)
    # rotating χ alone (B0 fixed) does change the field: the test has power
    f_bad = physics.forward_field(np.ascontiguousarray(chi.transpose(0, 2, 1)), (0.8, 1.5, 1.0), b0)
    assert np.abs(f_bad - f.transpose(0, 2, 1)).max() > 1e-3


def _rim_lesion(rim_ppm):
    from rimscope.simulate.acquisition import ModelGrid
    from rimscope.simulate.config import SimConfig
    from rimscope.simulate.lesions_model import Placed, render_lesion

    n, h = 64, 1.0
    grid = ModelGrid(np.zeros(3), h, (n, n, n))
    idx = np.indices((n, n, n))
    r = np.sqrt(((idx - 32) ** 2).sum(0)) * h
    brain = r <= 28
    les = r <= 5.0
    chi = np.where(brain, -0.03, 0).astype(np.float32)
    fl = np.ones_like(chi)
    p = Placed(None, tuple(slice(24, 41) for _ in range(3)), les[24:41, 24:41, 24:41])
    p.truth = dict(kind="rim" if rim_ppm else "plain", core_type="iso", core_ppm=0.0, coverage=1.0,
                   rim_ppm=rim_ppm, rim_thickness_mm=1.2, central_vein=False)
    render_lesion(p, grid, chi, fl, np.random.default_rng(1), SimConfig(), 0.5)
    return chi * brain, brain, les.astype(np.int32)


@pytest.mark.parametrize("inversion", ["tkd", "cg"])
def test_rim_survives_forward_and_inversion(inversion):
    from rimscope.lesions import lesion_regions

    rng = np.random.default_rng(2)
    contrasts = {}
    for rim in (0.05, 0.0):
        chi, brain, lab = _rim_lesion(rim)
        b0 = (0.1, 0.2, 0.97)
        field = physics.forward_field(chi, (1, 1, 1), b0) + rng.normal(0, 0.001, chi.shape).astype(np.float32)
        if inversion == "tkd":
            q = physics.tkd(field, brain, (1, 1, 1), b0, 0.15)
        else:
            q = physics.cg_l2(field, brain, (1, 1, 1), b0, lam=0.005, iterations=25)
        reg = lesion_regions(lab, 1, (1, 1, 1), brain)
        w = q[reg.window]
        contrasts[rim] = float(w[reg.shell].mean() - w[reg.surround].mean())
    # positive after the inversion, under-estimated (not above the true 0.05 band) and clearly
    # above a rimless lesion's
    assert contrasts[0.05] > 0.008, contrasts
    assert contrasts[0.05] < 0.05, contrasts
    assert contrasts[0.05] - contrasts[0.0] > 0.008, contrasts


def test_tkd_recovers_smooth_chi_inside_mask():
    """TKD on noise-free data gets a blob's χ back within its known under-estimation."""
    chi, _ = _sphere(n=64, radius=10.0, sub=2)
    chi = chi * 0.1
    mask = np.ones_like(chi, bool)
    q = physics.tkd(physics.forward_field(chi, (1, 1, 1), (0, 0, 1)), mask, (1, 1, 1), (0, 0, 1), 0.2)
    inside = chi > 0.099
    ratio = q[inside].mean() / 0.1
    assert 0.6 < ratio < 1.05, ratio


REAL = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "qsm2016"


@pytest.mark.skipif(not (REAL / "chi_cosmos.nii.gz").exists(), reason="2016 challenge data not present")
def test_forward_model_explains_real_in_vivo_field():
    """On the 2016 challenge: D ⊛ χ_COSMOS matches the measured tissue field (B0 on axis 2),
    and the same kernel with B0 on another axis does not."""
    import nibabel as nib

    img = nib.load(str(REAL / "chi_cosmos.nii.gz"))
    chi = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(str(REAL / "mask.nii.gz")).dataobj) > 0
    phs = np.asarray(nib.load(str(REAL / "phase_tissue.nii.gz")).dataobj, np.float32)
    zooms = img.header.get_zooms()[:3]
    f = physics.forward_field(chi, zooms, (0, 0, 1))
    r = np.corrcoef(f[mask], phs[mask])[0, 1]
    slope = float(np.dot(f[mask], phs[mask]) / np.dot(f[mask], f[mask]))
    assert r > 0.75 and 0.8 < slope < 1.3, (r, slope)
    wrong = physics.forward_field(chi, zooms, (1, 0, 0))
    assert np.corrcoef(wrong[mask], phs[mask])[0, 1] < 0.2
