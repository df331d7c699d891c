"""Every parameter of the simulator in one JSON-able dataclass.

A cohort is only reproducible (and comparable across papers) if everything that shapes it is
named, seeded and recorded: `truth.json` stores this config in full, and `--config FILE.json`
overrides any field by name. Ranges are `[low, high]` pairs sampled uniformly per subject or per
lesion; probabilities are per lesion unless said otherwise.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import InputError


def fill_config(cls, data: dict, path, *, label: str, unknown, numbers: bool = False):
    """cls() with the keys of `data` set by field name, then validated: one reading for every
    simulator config. Unknown keys are refused with `unknown(sorted_unknown, known)`, a value
    whose kind (list/dict or scalar) differs from its default's with "<label> key ... must look
    like ..."; with `numbers`, a scalar must also be a number."""
    known = {f.name for f in fields(cls)}
    bad = sorted(set(data) - known)
    if bad:
        raise InputError(unknown(bad, known), path)
    cfg = cls()
    for k, v in data.items():
        default = getattr(cfg, k)
        nested = isinstance(default, (list, dict))
        if nested != isinstance(v, (list, dict)) or (
                numbers and not nested and not isinstance(v, (int, float))):
            raise InputError(f"{label} key {k!r} must look like {default!r}", path)
        setattr(cfg, k, v)
    cfg.validate(path)
    return cfg


@dataclass
class SimConfig:
    # ------------------------------------------------------------ anatomy
    brains: list = field(default_factory=lambda: ["patient07", "patient19", "patient26"])
    model_mm: float = 0.75  # spacing of the fine grid χ and FLAIR are built on (partial volume)
    crop_mm: float = 0.0  # 0: whole brain; else a cube of this side at the brain centre (fast tests)
    chi_wm: list = field(default_factory=lambda: [-0.035, -0.02])
    chi_gm: list = field(default_factory=lambda: [0.005, 0.02])
    chi_csf: list = field(default_factory=lambda: [-0.005, 0.005])
    chi_deep_gm_scale: list = field(default_factory=lambda: [0.7, 1.3])  # × nominal nucleus values
    texture_ppm: float = 0.006  # amplitude of smooth tissue texture
    texture_mm: float = 2.5
    n_veins: list = field(default_factory=lambda: [25, 50])  # tortuous WM veins
    n_medullary: list = field(default_factory=lambda: [25, 50])  # radiating medullary veins
    vein_chi: list = field(default_factory=lambda: [0.2, 0.5])
    vein_radius_mm: list = field(default_factory=lambda: [0.3, 0.8])
    # ------------------------------------------------------------ lesions
    lesions_median: float = 20.0  # lesions per subject: lognormal
    lesions_sigma: float = 0.6
    lesions_range: list = field(default_factory=lambda: [3, 80])
    lesion_min_mm3: float = 15.0
    lesion_max_mm3: float = 3000.0  # confluent masses above this are dropped
    donors_per_subject: list = field(default_factory=lambda: [3, 6])
    lesion_in_brain_frac: float = 0.9
    # kind probabilities; the rest are ordinary lesions (iso/hypo cores, no rim)
    p_rim_base: float = 0.13  # Rim+ (coverage >= 2/3) at the median lesion volume
    rim_volume_slope: float = 0.15  # log-odds per log(volume) unit: larger lesions rim more often
    p_subject_rim_free: float = 0.45  # subjects without chronic active lesions (rim odds × 0.03)
    p_partial_rim: float = 0.12  # rim on < 2/3 of the edge
    p_hyper_norim: float = 0.08  # hard negative: diffusely hyperintense core, no rim
    p_vein_touch: float = 0.08  # hard negative: a vein passing along the edge
    p_central_vein: float = 0.20  # central vein (independent of the above)
    coverage_pos: list = field(default_factory=lambda: [0.667, 1.0])
    coverage_partial: list = field(default_factory=lambda: [0.15, 0.667])
    rim_chi: list = field(default_factory=lambda: [0.02, 0.08])  # ppm above the lesion core
    rim_thickness_mm: list = field(default_factory=lambda: [0.8, 1.6])
    # [] : the band straddles the edge, mostly inside; [lo, hi]: band centred lo..hi mm from the
    # mask edge (negative inside, positive outside), drawn per rim
    rim_offset_mm: list = field(default_factory=list)
    core_kinds: dict = field(default_factory=lambda: {"hypo": 0.3, "iso": 0.5, "hyper": 0.2})
    core_hypo: list = field(default_factory=lambda: [-0.025, -0.005])  # relative to WM
    core_iso: list = field(default_factory=lambda: [-0.005, 0.008])
    core_hyper: list = field(default_factory=lambda: [0.01, 0.04])
    hyper_norim_chi: list = field(default_factory=lambda: [0.01, 0.035])
    # ------------------------------------------------------------ rater
    rater_softness: float = 0.05  # logistic width (coverage units) around 2/3
    rater_weak_rim_ppm: float = 0.01  # rims weaker than this are missed more often
    rater_flip_clear: float = 0.008  # flips on clear lesions
    # ------------------------------------------------------------ acquisition (per subject)
    voxel_mm: list = field(default_factory=lambda: [0.6, 1.0])
    p_anisotropic: float = 0.4  # slice thickness differs from in-plane
    slice_mm: list = field(default_factory=lambda: [0.8, 2.0])
    orientations: list = field(default_factory=lambda: ["RAS", "LAS", "LPS", "LPI", "PIR", "ASL", "RPI"])
    p_oblique: float = 0.6
    oblique_deg: list = field(default_factory=lambda: [0.0, 15.0])
    b0_tilt_deg: list = field(default_factory=lambda: [0.0, 20.0])  # head pose vs B0 (scanner z)
    inversions: dict = field(default_factory=lambda: {"tkd": 0.5, "cg_l2": 0.5})
    tkd_threshold: list = field(default_factory=lambda: [0.1, 0.25])
    cg_lambda: list = field(default_factory=lambda: [0.002, 0.02])
    cg_iterations: list = field(default_factory=lambda: [8, 16])
    noise_ppm_1mm: list = field(default_factory=lambda: [0.0008, 0.003])  # field noise at 1 mm³
    background_ppm: list = field(default_factory=lambda: [0.0, 0.03])  # residual background field
    mask_erode_mm: list = field(default_factory=lambda: [0.0, 2.5])
    reference: dict = field(default_factory=lambda: {"brain": 0.5, "csf": 0.3, "none": 0.2})
    offset_ppm: list = field(default_factory=lambda: [-0.01, 0.01])
    # ------------------------------------------------------------ FLAIR
    p_flair_own_grid: float = 0.5
    flair_grids: dict = field(default_factory=lambda: {"3d_1mm": 0.6, "2d_thick": 0.4})
    flair_lesion_contrast: list = field(default_factory=lambda: [0.45, 0.9])  # × brain median
    flair_bias: list = field(default_factory=lambda: [0.0, 0.25])
    flair_noise: list = field(default_factory=lambda: [0.01, 0.05])
    # ------------------------------------------------------------ segmentation error
    seg_p_dilate: float = 0.2
    seg_p_erode: float = 0.15
    seg_voxels: list = field(default_factory=lambda: [1, 1])  # voxels dilated / eroded, per lesion
    seg_boundary_noise: list = field(default_factory=lambda: [0.0, 0.15])
    # ------------------------------------------------------------ output
    montage: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, path=None) -> "SimConfig":
        return fill_config(cls, data, path, label="config",
                           unknown=lambda bad, known: f"unknown simulator config key(s) {bad}; valid "
                           "keys are listed in truth.json 'config' of any cohort")

    def validate(self, path=None) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
                if v[0] > v[1]:
                    raise InputError(f"config range {f.name} = {v} has low > high", path)
        if len(self.rim_offset_mm) not in (0, 2):
            raise InputError(f"rim_offset_mm {self.rim_offset_mm} must be [] or [low, high] in mm", path)
        if self.seg_voxels[0] < 1:
            raise InputError(f"seg_voxels {self.seg_voxels} must be at least 1 voxel", path)
        if not 0.3 <= self.model_mm <= 1.0:
            raise InputError(f"model_mm {self.model_mm} must be within 0.3..1.0", path)


def read_json_object(path, what: str = "config") -> dict:
    """A JSON file holding one object {key: value}; any other file is a one-line InputError
    naming `what` (the simulator's and the lesion engine's configs)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} file not found; give an existing JSON file", p) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON ({str(exc).splitlines()[0]}); fix the file", p) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc.strerror}); give a readable JSON file", p) from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a JSON object {{key: value}}", p)
    return data


def load_config(path=None) -> SimConfig:
    """Defaults, or defaults overridden by the keys of a JSON file."""
    if path is None:
        return SimConfig()
    return SimConfig.from_dict(read_json_object(path), Path(path))
