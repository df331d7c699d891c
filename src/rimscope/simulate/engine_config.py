"""Every range of the lesion engine in one recorded, JSON-overridable dataclass.

The engine is domain randomisation: a network trained on it generalises only if each tissue,
lesion and acquisition parameter is drawn from a range WIDER than real scanners give (as
SynthSeg does for segmentation). Keeping every range here, named, lets a model card record the
exact training distribution and lets a user widen or narrow one range with a JSON file.
Ranges are [low, high] drawn uniformly per example; probabilities are per example.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import InputError
from .config import fill_config, read_json_object


@dataclass
class EngineConfig:
    # ------------------------------------------------------------ labels
    rim_fraction: float = 0.4  # share of examples drawn as Rim+ (the engine's prevalence)
    rater_flip: float = 0.0  # optional label noise: labels flip at this rate
    min_coverage: float = 2 / 3  # NAIMS: Rim+ needs a rim over >= 2/3 of the edge ...
    min_amplitude_ppm: float = 0.02  # ... at a mean amplitude >= 20 ppb
    # negatives: relative weights of the kinds drawn when an example is Rim-
    negative_kinds: dict = field(default_factory=lambda: {
        "plain": 0.22, "partial_rim": 0.22, "weak_rim": 0.12, "hyper_core": 0.12,
        "vein_edge": 0.12, "central_vein": 0.1, "deep_gm": 0.1})
    # ------------------------------------------------------------ lesion shape
    lesion_min_mm3: float = 10.0  # library: every 26-connected component of the 30 masks in range
    lesion_max_mm3: float = 4000.0
    donors: list = field(default_factory=list)  # donor masks to draw from; empty: all 30
    scale: list = field(default_factory=lambda: [0.7, 1.4])
    p_rotate: float = 1.0  # shapes posed by a random rotation/flip (else as stored, RAS)
    p_neighbour: float = 0.35  # another lesion nearby
    neighbour_gap_mm: list = field(default_factory=lambda: [0.0, 4.0])
    p_fov_cut: float = 0.05  # the field of view ends across the lesion
    # ------------------------------------------------------------ rim
    rim_amplitude_ppm: list = field(default_factory=lambda: [0.02, 0.1])  # Rim+ and partial rims
    weak_rim_ppm: list = field(default_factory=lambda: [0.008, 0.018])  # full coverage, too faint
    rim_thickness_mm: list = field(default_factory=lambda: [0.5, 2.5])
    rim_offset_mm: list = field(default_factory=lambda: [-1.5, 1.5])  # band centre vs the edge
    rim_coverage_pos: list = field(default_factory=lambda: [0.667, 1.0])
    rim_coverage_partial: list = field(default_factory=lambda: [0.15, 0.64])
    p_two_caps: float = 0.3  # coverage as two contiguous arcs instead of one
    rim_amplitude_variation: list = field(default_factory=lambda: [0.0, 0.6])  # along the rim
    # ------------------------------------------------------------ core and hard negatives
    core_kinds: dict = field(default_factory=lambda: {"hypo": 0.3, "iso": 0.45, "hyper": 0.25})
    core_hypo: list = field(default_factory=lambda: [-0.03, -0.005])
    core_iso: list = field(default_factory=lambda: [-0.005, 0.008])
    core_hyper: list = field(default_factory=lambda: [0.008, 0.04])
    hyper_core_ppm: list = field(default_factory=lambda: [0.03, 0.09])  # strongly paramagnetic, no rim
    # ------------------------------------------------------------ background tissue
    box_mm: float = 48.0  # side of the local box the physics runs on (>= the oblique patch)
    box_max_vox: int = 96  # cap per axis (fine voxels get a smaller box)
    texture_ppm: list = field(default_factory=lambda: [0.002, 0.012])
    texture_mm: list = field(default_factory=lambda: [1.0, 4.0])
    p_gm_boundary: float = 0.4
    gm_distance_mm: list = field(default_factory=lambda: [2.0, 14.0])  # boundary plane from lesion
    gm_contrast_ppm: list = field(default_factory=lambda: [0.01, 0.05])  # GM minus WM
    p_ventricle: float = 0.25
    p_deep_gm: float = 0.15
    deep_gm_ppm: list = field(default_factory=lambda: [0.05, 0.2])
    deep_gm_radius_mm: list = field(default_factory=lambda: [4.0, 10.0])
    deep_gm_gap_mm: list = field(default_factory=lambda: [0.5, 6.0])
    n_veins: list = field(default_factory=lambda: [0, 4])  # straight tubes through the box
    p_medullary: float = 0.4  # veins parallel-ish, as medullary veins radiating from a ventricle
    vein_ppm: list = field(default_factory=lambda: [0.2, 0.5])
    vein_radius_mm: list = field(default_factory=lambda: [0.25, 0.9])
    vein_edge_gap_mm: list = field(default_factory=lambda: [-0.3, 0.8])  # vein surface to lesion edge
    # ------------------------------------------------------------ mask errors (the user's mask)
    p_dilate: float = 0.15
    p_erode: float = 0.15
    mask_error_vox: list = field(default_factory=lambda: [1, 2])
    p_merged: float = 0.3  # given a neighbour: its mask merged into the lesion's
    # ------------------------------------------------------------ acquisition
    voxel_mm: list = field(default_factory=lambda: [0.5, 1.2])  # in plane
    slice_mm: list = field(default_factory=lambda: [0.5, 3.0])  # through plane
    p_axis_aligned: float = 0.25  # no obliquity at all (B0 along the slice axis)
    b0_angle_deg: list = field(default_factory=lambda: [0.0, 35.0])  # B0 vs the slice axis
    b0_patch_jitter_deg: list = field(default_factory=lambda: [0.0, 5.0])  # B0 vs the given --b0-dir
    noise_ppm: list = field(default_factory=lambda: [0.001, 0.008])  # field noise per voxel
    background_ppm: list = field(default_factory=lambda: [0.0, 0.04])  # residual background field
    inversions: dict = field(default_factory=lambda: {
        "tkd": 0.3, "tikhonov": 0.15, "gradient": 0.2, "cg": 0.25, "blur": 0.1})
    tkd_threshold: list = field(default_factory=lambda: [0.1, 0.3])
    tikhonov_lambda: list = field(default_factory=lambda: [0.002, 0.05])  # log-uniform
    gradient_lambda: list = field(default_factory=lambda: [0.001, 0.03])  # log-uniform
    cg_lambda: list = field(default_factory=lambda: [0.001, 0.03])  # log-uniform
    cg_iterations: list = field(default_factory=lambda: [3, 20])
    blur_lambda: list = field(default_factory=lambda: [0.03, 0.3])  # log-uniform, gradient penalty
    blur_mm: list = field(default_factory=lambda: [0.6, 1.5])  # extra Gaussian blur
    offset_ppm: list = field(default_factory=lambda: [-0.015, 0.015])  # referencing
    # ------------------------------------------------------------ FLAIR
    flair_lesion_contrast: list = field(default_factory=lambda: [0.2, 1.2])  # × WM
    flair_gm_contrast: list = field(default_factory=lambda: [0.05, 0.35])
    flair_bias: list = field(default_factory=lambda: [0.0, 0.3])
    flair_noise: list = field(default_factory=lambda: [0.01, 0.08])
    p_flair_blur: float = 0.4  # FLAIR at its own (coarser) resolution
    flair_blur_mm: list = field(default_factory=lambda: [0.5, 3.0])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, path=None) -> "EngineConfig":
        return fill_config(cls, data, path, label="engine config", numbers=True,
                           unknown=lambda bad, known: f"unknown engine config key {bad[0]!r}; "
                           f"valid keys: {', '.join(sorted(known))}")

    def validate(self, path=None) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list) and f.name != "donors":
                if len(v) != 2 or not all(isinstance(x, (int, float)) for x in v) or v[0] > v[1]:
                    raise InputError(f"engine config range {f.name} = {v} must be [low, high] "
                                     "with low <= high", path)
            if isinstance(v, dict) and (not v or any(not isinstance(x, (int, float)) or x < 0
                                                     for x in v.values()) or sum(v.values()) <= 0):
                raise InputError(f"engine config {f.name} must map names to weights >= 0", path)
        for name in ("p_rotate", "rim_fraction", "rater_flip", "p_neighbour", "p_fov_cut", "p_two_caps",
                     "p_gm_boundary", "p_ventricle", "p_deep_gm", "p_medullary", "p_dilate",
                     "p_erode", "p_merged", "p_axis_aligned", "p_flair_blur"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise InputError(f"engine config {name} = {getattr(self, name)} must be within 0..1",
                                 path)
        allowed = {"negative_kinds": {"plain", "partial_rim", "weak_rim", "hyper_core", "vein_edge",
                                      "central_vein", "deep_gm"},
                   "inversions": {"tkd", "tikhonov", "gradient", "cg", "blur"},
                   "core_kinds": {"hypo", "iso", "hyper"}}
        for name, ok in allowed.items():
            bad = sorted(set(getattr(self, name)) - ok)
            if bad:
                raise InputError(f"engine config {name} has unknown entry {bad[0]!r}; known: "
                                 f"{', '.join(sorted(ok))}", path)
        if self.voxel_mm[0] < 0.3 or self.slice_mm[0] < 0.3 or self.box_mm < 40:
            raise InputError("engine config voxel_mm/slice_mm must be >= 0.3 mm and box_mm >= 40",
                             path)


def load_engine_config(path=None) -> EngineConfig:
    """Defaults, or defaults overridden by the keys of a JSON file (unknown keys refused)."""
    if path is None:
        return EngineConfig()
    return EngineConfig.from_dict(read_json_object(path, "engine config"), Path(path))
