"""DistributedDataParallel on CPU (gloo): two ranks end with identical weights, rank 0 alone
writes, and the distributed balanced sampler gives the ranks disjoint slices of one sequence."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from rimscope.train.sampling import epoch_indices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, tmp: str, rim_head: bool = False) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from rimscope.models.synthetic import synthetic_patches
    from rimscope.train.data import LesionData
    from rimscope.train.finetune import fit

    x, y, s = synthetic_patches(32, seed=1)
    xv, yv, sv = synthetic_patches(12, seed=2)
    tr = LesionData(x, y, s, np.arange(32), np.ones(32), [[]] * 32)
    va = LesionData(xv, yv, sv, np.arange(12), np.ones(12), [[]] * 12)
    model = fit("asymmetric", tr, va, options={"epochs": 2, "batch_size": 4,
                                               "model": {"widths": [8, 16, 16, 16], "rim_head": rim_head}},
                seed=7, out=os.path.join(tmp, "model"))
    torch.save(model.state_dict(), os.path.join(tmp, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("rim_head", [False, True])  # a voxel head without voxel truth: frozen, not idle
def test_two_process_gloo_ddp_ends_with_identical_weights(tmp_path, rim_head):
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path), rim_head), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "model" / "card.json").exists()
    import json

    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["training"]["world_size"] == 2


def test_distributed_sampler_splits_one_global_sequence():
    y = np.array([0] * 90 + [1] * 10)
    full = epoch_indices(y, epoch=3, seed=5, batch_size=1)
    r0 = epoch_indices(y, epoch=3, seed=5, rank=0, world=2, batch_size=1)
    r1 = epoch_indices(y, epoch=3, seed=5, rank=1, world=2, batch_size=1)
    np.testing.assert_array_equal(np.sort(np.concatenate([r0, r1])), np.sort(full))
    assert len(r0) == len(r1) == 50
    assert 0.35 < y[full].mean() < 0.65  # balanced, not the natural 10 %
    assert not np.array_equal(full, epoch_indices(y, epoch=4, seed=5, batch_size=1))
