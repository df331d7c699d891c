"""Random scanner grids: orientation, obliquity, B0 and the head→grid sampling chain."""
from __future__ import annotations

import numpy as np
from nibabel import orientations as nio

from rimscope.simulate.acquisition import ModelGrid, head_pose, random_acquisition, sample
from rimscope.simulate.config import SimConfig


def test_grids_cover_the_head_and_record_b0():
    cfg = SimConfig()
    seen = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        head, pose = head_pose(rng, cfg.b0_tilt_deg)
        assert 0 <= pose["b0_tilt_deg"] <= cfg.b0_tilt_deg[1] + 1e-6
        lo, hi = np.array([-60.0, -90, -40]), np.array([60.0, 70, 60])
        acq = random_acquisition(rng, cfg, head, lo, hi)
        seen.add(acq.orientation)
        assert "".join(nio.aff2axcodes(acq.affine)) == acq.orientation  # obliquity <= 15°
        np.testing.assert_allclose(np.sqrt((acq.affine[:3, :3] ** 2).sum(0)), acq.zooms, rtol=1e-6)
        assert all(0.6 <= z <= 2.0 for z in acq.zooms)
        b0 = acq.b0_in_axes()
        np.testing.assert_allclose(np.linalg.norm(b0), 1, atol=1e-9)
        # B0 in the head frame makes the recorded angle with the head's superior axis
        np.testing.assert_allclose(np.degrees(np.arccos(pose["b0_in_head"][2])), pose["b0_tilt_deg"], atol=1e-6)
        # every corner of the head box falls inside the grid
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        world = corners @ head[:3, :3].T + head[:3, 3]
        vox = (np.linalg.inv(acq.affine) @ np.c_[world, np.ones(len(world))].T)[:3].T
        assert np.all(vox >= -0.5) and np.all(vox <= np.array(acq.shape) - 0.5)
    assert len(seen) >= 3


def test_sampling_follows_world_to_head_to_model_chain():
    cfg = SimConfig(p_oblique=1.0)
    rng = np.random.default_rng(5)
    head, _ = head_pose(rng, [10, 20])
    grid = ModelGrid(np.array([-40.0, -50.0, -30.0]), 0.75, (108, 134, 108))
    acq = random_acquisition(rng, cfg, head, grid.origin + 8, grid.to_mm(np.array(grid.shape) - 1) - 8)
    mm = grid.to_mm(np.indices(grid.shape).reshape(3, -1).T)
    ramp = (mm @ np.array([0.5, -1.0, 2.0])).reshape(grid.shape).astype(np.float32)
    out = sample(ramp, grid, acq)
    idx = np.array([[3, 4, 5], [acq.shape[0] // 2, acq.shape[1] // 2, acq.shape[2] // 2]])
    world = (acq.affine @ np.c_[idx, np.ones(2)].T)[:3].T
    head_mm = (np.linalg.inv(head) @ np.c_[world, np.ones(2)].T)[:3].T
    want = head_mm @ np.array([0.5, -1.0, 2.0])
    got = out[tuple(idx.T)]
    inside = np.all((grid.to_index(head_mm) >= 0) & (grid.to_index(head_mm) <= np.array(grid.shape) - 1), axis=1)
    assert inside[1]
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-3)
