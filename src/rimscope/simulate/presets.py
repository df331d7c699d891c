"""Named acquisition shifts for the whole-brain simulator: the test cohorts of the transfer bench.

A model trained on one distribution is only worth its transfer: each preset fixes one setting of
the acquisition (or of the lesion masks) at a value away from the default mix, and leaves every
other parameter at its default, so a drop in a row of the "domain shift" table names its cause.
A preset is nothing but SimConfig overrides; `--config FILE` keys still win over a preset's.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .config import SimConfig, load_config

PRESETS: dict[str, dict] = {
    "default": {},
    # stored LPS, every subject oblique by 15-25 degrees
    "lps-oblique": {"orientations": ["LPS"], "p_oblique": 1.0, "oblique_deg": [15.0, 25.0]},
    # thick slices: 0.75 x 0.75 x 1.5 mm and 0.5 x 0.5 x 2 mm (in plane below the 0.75 mm model
    # grid the images are sharper-sampled, not more detailed)
    "aniso-1.5": {"voxel_mm": [0.75, 0.75], "p_anisotropic": 1.0, "slice_mm": [1.5, 1.5]},
    "aniso-2": {"voxel_mm": [0.5, 0.5], "p_anisotropic": 1.0, "slice_mm": [2.0, 2.0]},
    # FLAIR always on a grid of its own (3D 1 mm oblique or 2D thick slices)
    "flair-grid": {"p_flair_own_grid": 1.0},
    # TKD only, field noise 2-4x the default's upper end
    "tkd-noisy": {"inversions": {"tkd": 1.0}, "noise_ppm_1mm": [0.005, 0.01]},
    # iterative L2 only, gradient penalty 5-50x the default's (blurred, under-estimated rims)
    "strong-reg": {"inversions": {"cg_l2": 1.0}, "cg_lambda": [0.1, 0.5]},
    # every rim band centred 0.5-1.5 mm outside the mask edge (the default: mostly inside)
    "rim-outside": {"rim_offset_mm": [0.5, 1.5]},
    # every lesion mask eroded / dilated by 1-2 voxels (lesions under 30 voxels keep theirs)
    "mask-eroded": {"seg_p_dilate": 0.0, "seg_p_erode": 1.0, "seg_voxels": [1, 2]},
    "mask-dilated": {"seg_p_dilate": 1.0, "seg_p_erode": 0.0, "seg_voxels": [1, 2]},
}


def names() -> list[str]:
    return list(PRESETS)


def parse(text: str) -> list[str]:
    """'all' or a comma-separated list of preset names, checked."""
    if text.strip() == "all":
        return names()
    out = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in out if t not in PRESETS]
    if bad or not out:
        raise InputError(f"unknown preset(s) {bad or text!r}; choose from all, {', '.join(PRESETS)}")
    return out


def preset_config(name: str, path=None) -> SimConfig:
    """The default config with a preset's overrides, then a JSON file's keys on top."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    data = dict(PRESETS[name])
    if path is not None:
        load_config(path)  # validates the file with its own messages
        data.update(json.loads(Path(path).read_text(encoding="utf-8")))
    return SimConfig.from_dict(data, path)
