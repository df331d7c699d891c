"""rimscope.lesions: instances, geometry in world space, and the rim regions."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import (PHANTOM_LESIONS, centred_affine, phantom_on_grid, tiny_subject,
                      to_orientation, write_nii)

from rimscope.io import load_subject
from rimscope.lesions import label_components, lesion_regions, lesion_table


def test_components_26_connected_in_raster_order():
    m = np.zeros((8, 8, 8), bool)
    m[5, 5, 5] = m[6, 6, 6] = True  # corner neighbours: one component under 26-connectivity
    m[1, 7, 0] = True  # first in raster (C) order
    m[1, 0, 3] = m[1, 1, 3] = True  # also x == 1 but lower y: comes first
    lab = label_components(m)
    assert lab[1, 0, 3] == 1 and lab[1, 1, 3] == 1
    assert lab[1, 7, 0] == 2
    assert lab[5, 5, 5] == lab[6, 6, 6] == 3
    assert lab.max() == 3 and lab.dtype == np.int32
    assert not label_components(np.zeros((4, 4, 4))).any()


def test_table_geometry_with_anisotropic_voxels():
    lab = np.zeros((20, 20, 20), np.int32)
    lab[2:6, 3:5, 4:7] = 5  # 4*2*3 = 24 voxels
    lab[0:2, 10:12, 10:12] = 1_000_000_007  # large id, touching the x = 0 border
    aff = np.diag([0.5, 2.0, 1.5, 1.0])
    aff[:3, 3] = [10, 20, 30]
    t = {les.id: les for les in lesion_table(lab, aff)}
    assert sorted(t) == [5, 1_000_000_007]
    a = t[5]
    assert a.n_voxels == 24 and a.volume_mm3 == pytest.approx(24 * 1.5)
    np.testing.assert_allclose(a.centroid_vox, [3.5, 3.5, 5.0])
    np.testing.assert_allclose(a.centroid_mm, [10 + 3.5 * 0.5, 20 + 7.0, 30 + 7.5])
    assert a.bbox == (slice(2, 6), slice(3, 5), slice(4, 7))
    assert "tiny" in a.flags and "edge_of_fov" not in a.flags
    assert "edge_of_fov" in t[1_000_000_007].flags
    assert lesion_table(np.zeros((3, 3, 3), np.int32), aff) == []


@pytest.mark.parametrize("codes,zooms", [("RAS", (1, 1, 1)), ("LAS", (1, 1, 1)),
                                         ("LPS", (0.8, 1.0, 1.2)), ("PSR", (1, 1, 1)),
                                         ("SLA", (1.1, 0.9, 1.0))])
def test_world_centroid_independent_of_stored_orientation(tmp_path, codes, zooms):
    qsm, flair, labels, _ = tiny_subject()
    base = lesion_table(labels, np.diag([*zooms, 1.0]))  # RAS grid with these voxel sizes
    p = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels)):
        data, aff = to_orientation(arr, codes, zooms=zooms)
        p[role] = write_nii(tmp_path / f"{role}.nii", data, aff)
    s = load_subject(**p)
    t = {les.id: les for les in lesion_table(s.lesions, s.affine)}
    for b in base:
        np.testing.assert_allclose(t[b.id].centroid_mm, b.centroid_mm, atol=1e-9)
        assert t[b.id].volume_mm3 == pytest.approx(b.volume_mm3)


@pytest.mark.parametrize("codes,rot", [("RAS", 20.0), ("LPS", -15.0)])
def test_world_centroid_of_oblique_input_within_tolerance(tmp_path, codes, rot):
    shape = (44, 48, 40)
    found = {}
    for name, aff in (("ref", centred_affine(shape)), ("obl", centred_affine(shape, codes, rot_deg=rot))):
        q, f, m = phantom_on_grid(shape, aff)
        d = tmp_path / name
        d.mkdir()
        s = load_subject(write_nii(d / "q.nii", q, aff), write_nii(d / "f.nii", f, aff),
                         write_nii(d / "m.nii", m, aff))
        found[name] = sorted((les.centroid_mm for les in lesion_table(s.lesions, s.affine)),
                             key=lambda c: c[0])
    truth = sorted((np.array(c) for c, _, _ in PHANTOM_LESIONS), key=lambda c: c[0])
    assert len(found["obl"]) == len(truth)
    for got, ref, true in zip(found["obl"], found["ref"], truth):
        assert np.linalg.norm(got - true) < 0.35  # voxelisation of a ball: a fraction of a voxel
        assert np.linalg.norm(got - ref) < 0.5


def test_regions_are_in_millimetres():
    vols = []
    for zooms in ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5)):
        n = int(40 / (zooms[0] * 2))
        c = (n - 1) / 2
        g = np.indices((n, n, n)) - c
        r_mm = np.sqrt((g ** 2).sum(0)) * zooms[0]
        lab = np.zeros((n, n, n), np.int32)
        lab[r_mm <= 5.0] = 1
        lab[(np.abs(g[0] * zooms[0] - 8.5) < 1) & (np.abs(g[1]) * zooms[0] < 1) & (np.abs(g[2]) * zooms[0] < 1)] = 2
        reg = lesion_regions(lab, 1, zooms)
        rr = r_mm[reg.window]
        assert np.all(rr[reg.core] < 5.0 - 1.5 + zooms[0])  # edge: half a voxel beyond r
        assert np.all(np.abs(rr[reg.shell] - 5.0) <= 1.0 + zooms[0])
        assert np.all((rr[reg.surround] > 5.0 + 2.0 - zooms[0]) & (rr[reg.surround] <= 5.0 + 4.0 + zooms[0]))
        assert not np.any(reg.surround & (lab[reg.window] == 2))  # other lesions excluded
        assert not np.any(reg.shell & reg.core)
        # the two resolutions describe the same shell: similar volume in mm3
        vols.append([m.sum() * zooms[0] ** 3 for m in (reg.shell, reg.core, reg.surround)])
    (shell1, core1, sur1), (shell05, core05, sur05) = vols
    assert abs(shell1 - shell05) < 0.1 * shell1  # a 2 mm band around r = 5 mm (~640 mm3 ideal)
    assert 450 < shell1 < 700
    assert abs(core1 - core05) < 0.2 * core1 and abs(sur1 - sur05) < 0.1 * sur1
