"""Lesion-centred patches sampled in millimetres along world axes: the one path from images to
network inputs, shared by training, evaluation and prediction. `sampling` holds the patch geometry
(`PatchConfig`) and the sampler (`sample_patch`, `extract_patches`, `sample_volume`, channels
`CHANNELS`); `cache`
the per-subject cache (`PatchCache`) and the path from a cohort entry to patches
(`subject_patches`).

Sampling in world space (not voxel space) makes a lesion's patch the same whatever the input's
orientation, obliquity or voxel size, and puts B0 on the patch's last axis, so the only
physics-respecting augmentations (rotations about B0, flips) are simple array operations.
"""
from .cache import CACHE_VERSION, PatchCache, subject_patches
from .sampling import (CHANNELS, SDIST_CLIP_MM, PatchConfig, PatchSet, b0_frame, extract_patches,
                       patch_transform, sample_grid, sample_patch, sample_volume)

__all__ = ["CACHE_VERSION", "CHANNELS", "SDIST_CLIP_MM", "PatchCache", "PatchConfig", "PatchSet", "b0_frame",
           "extract_patches", "patch_transform", "sample_grid", "sample_patch", "sample_volume",
           "subject_patches"]
