"""rimscope.patches: world-space patches (orientation-independent), padding flags, the cache."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import centred_affine, phantom_on_grid, tiny_subject, to_orientation, write_nii

import rimscope.patches.sampling as P
from rimscope.cohort import SubjectEntry
from rimscope.io import load_subject
from rimscope.patches import CHANNELS, PatchCache, PatchConfig, extract_patches, subject_patches

CFG = PatchConfig(size=16, spacing_mm=1.0)


def _load(folder, codes="RAS", zooms=(1, 1, 1), rot=0.0, binary=False):
    qsm, flair, labels, _ = tiny_subject()
    if binary:
        labels = (labels > 0).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    p = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels)):
        data, aff = to_orientation(arr, codes, zooms=zooms, rot_deg=rot)
        p[role] = write_nii(folder / f"sub-01_{role}.nii.gz", data, aff)
    return p


@pytest.mark.parametrize("codes", ["LAS", "LPS", "PSR", "ASL"])
@pytest.mark.parametrize("zooms", [(1, 1, 1), (0.8, 0.9, 1.25)])
def test_patch_identical_whatever_the_orientation(tmp_path, codes, zooms):
    ref = extract_patches(load_subject(**_load(tmp_path / "ras", "RAS", zooms)), CFG)
    other = extract_patches(load_subject(**_load(tmp_path / codes, codes, zooms)), CFG)
    np.testing.assert_array_equal(ref.ids, other.ids)
    assert ref.x.shape == (4, len(CHANNELS), 16, 16, 16)
    np.testing.assert_allclose(other.x, ref.x, atol=1e-5)
    assert ref.flags == other.flags


def test_patch_of_oblique_input_close_to_axis_aligned(tmp_path):
    shape = (44, 48, 40)
    cfg = PatchConfig(size=20, spacing_mm=1.0)
    out = {}
    for name, aff in (("ref", centred_affine(shape)), ("obl", centred_affine(shape, "LPS", rot_deg=20))):
        q, f, m = phantom_on_grid(shape, aff)
        d = tmp_path / name
        d.mkdir()
        s = load_subject(write_nii(d / "q.nii", q, aff), write_nii(d / "f.nii", f, aff),
                         write_nii(d / "m.nii", m, aff))
        ps = extract_patches(s, cfg)
        out[name] = ps.x[np.argsort([les.centroid_mm[0] for les in ps.lesions])]
    a, b = out["ref"], out["obl"]
    for i in range(len(a)):
        qa, qb = a[i, 0], b[i, 0]
        assert np.corrcoef(qa.ravel(), qb.ravel())[0, 1] > 0.97
        assert np.abs(qa - qb).max() < 0.2 * np.abs(qa).max()
        ma, mb = a[i, 2] > 0, b[i, 2] > 0
        assert 2 * np.sum(ma & mb) / (ma.sum() + mb.sum()) > 0.8


def test_separable_and_general_samplers_agree(tmp_path, monkeypatch):
    s = load_subject(**_load(tmp_path / "a", zooms=(0.9, 1.1, 1.0)))
    fast = extract_patches(s, CFG)
    monkeypatch.setattr(P, "_sample_separable", P.sample_grid)
    slow = extract_patches(s, CFG)
    np.testing.assert_allclose(fast.x, slow.x, atol=1e-5)
    assert fast.flags == slow.flags


@pytest.mark.parametrize("offset", [(3.0, 2.5, 4.0), (-20.0, 5.0, 5.0), (26.5, 1.0, -3.0)])
def test_oblique_sampler_is_scipys_trilinear_affine_resampling(offset):
    """sample_grid (one torch call) gives scipy's order-1 "grid-constant" affine_transform,
    padding values included: inside, across the edge of the volume, and mostly outside it."""
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    vols = [rng.normal(size=(30, 28, 26)).astype(np.float32) for _ in range(2)]
    m = Rotation.from_euler("xyz", [17, -8, 31], degrees=True).as_matrix() * 0.8
    t = np.asarray(offset)
    cvals = (0.0, -1.5)
    got = P.sample_grid(vols, cvals, m, t, 16, np.asarray(vols[0].shape))
    for v, c, g in zip(vols, cvals, got):
        want = ndimage.affine_transform(v, m, offset=t, output_shape=(16,) * 3, order=1,
                                        mode="grid-constant", cval=c, prefilter=False)
        assert g.dtype == np.float32 and g.shape == (16,) * 3
        np.testing.assert_allclose(g, want, atol=2e-5)


def test_channels_content(tmp_path):
    s = load_subject(**_load(tmp_path / "a"))
    ps = extract_patches(s, PatchConfig(size=24))
    for i, les in enumerate(ps.lesions):
        x = ps.x[i]
        c = 12
        assert x[2, c, c, c] == 1.0 and set(np.unique(x[2])) <= {0.0, 1.0}
        assert x[3].min() >= -1 and x[3].max() <= 1
        assert np.all(x[3][x[2] > 0] <= 0) and np.all(x[3][x[2] == 0] > 0)
        # QSM stays in ppm: lesion i carries +0.02*i ppm in the synthetic subject
        deep = x[3] < -0.3  # > 1.8 mm inside: no blending with the surroundings
        assert x[0][deep].mean() == pytest.approx(0.02 * les.id, abs=0.006)


def test_edge_of_fov_lesion_is_padded_and_flagged(tmp_path):
    qsm, flair, labels, _ = tiny_subject()
    labels[:] = 0
    labels[0:3, 20:24, 15:19] = 1  # touches x = 0
    labels[18:22, 20:24, 15:19] = 2  # well inside
    p = {r: write_nii(tmp_path / f"{r}.nii", a, np.eye(4))
         for r, a in (("qsm", qsm + 0.05), ("flair", flair), ("lesions", labels))}
    s = load_subject(**p)
    ps = extract_patches(s, PatchConfig(size=16))
    f = dict(zip(ps.ids.tolist(), ps.flags))
    assert "edge_of_fov" in f[1] and "padded" in f[1]
    assert "edge_of_fov" not in f[2] and "padded" not in f[2]
    x = ps.x[0]
    # centroid x ~ 1: patch index i maps to voxel i - 6.5; voxels < -1 are fully outside
    assert np.all(x[0, :5] == 0)  # QSM padded with 0
    np.testing.assert_allclose(x[1, :5], s.info["flair_background"], atol=1e-6)


def test_cache_same_patches_invalidated_and_rebuilt(tmp_path, caplog):
    paths = _load(tmp_path / "in")
    entry = SubjectEntry("01", **paths)
    cache = PatchCache(tmp_path / "cache")
    fresh = subject_patches(entry, CFG)
    first = subject_patches(entry, CFG, cache=cache)
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    hit = subject_patches(entry, CFG, cache=cache)
    np.testing.assert_array_equal(hit.x, fresh.x)
    np.testing.assert_array_equal(first.x, fresh.x)
    assert hit.flags == fresh.flags and [le.id for le in hit.lesions] == [le.id for le in fresh.lesions]
    np.testing.assert_allclose(hit.lesions[0].centroid_mm, fresh.lesions[0].centroid_mm)
    # a different config is a different entry
    subject_patches(entry, PatchConfig(size=8), cache=cache)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    # the input changes: the entry is not reused
    qsm, _, _, _ = tiny_subject()
    write_nii(paths["qsm"], qsm + 0.1, np.eye(4))
    os.utime(paths["qsm"], ns=(1, 1))
    changed = subject_patches(entry, CFG, cache=cache)
    assert changed.x[:, 0].mean() == pytest.approx(fresh.x[:, 0].mean() + 0.1, abs=0.02)
    # a corrupt entry is rebuilt
    key = cache.key(entry.paths(), CFG, {"qsm_units": "ppm", "subject": "01"})
    cache.path(key).write_bytes(b"PK\x03\x04 not really a zip")
    rebuilt = subject_patches(entry, CFG, cache=cache)
    np.testing.assert_array_equal(rebuilt.x, changed.x)
    assert "rebuilding" in caplog.text
    assert cache.get(key, CFG) is not None  # rewritten, readable again
