"""The I/O ground floor: every image enters and leaves rimscope through here.

Inputs are validated once (so later stages can trust them), turned to closest-canonical RAS with
their affine kept, and anything written goes back on the original QSM grid and header, so users
overlay results on their own scans without a resampling step.

The package: `images` (one image in and out: reading, checks, normalisation, atomic writing) and
`subject` (`load_subject` -> `Subject`, `canonical_mask`, `guess_subject_id`). The grid helpers of rimscope.grids
are re-exported here, as before.
"""
from ..grids import (AFFINE_TOL_MM, apply_ornt, axcodes, boxes_overlap, canonical_affine,  # noqa: F401
                     canonical_ornt, fov_fraction, invert_ornt, obliquity, on_qsm_grid, resample_to,
                     same_grid)
from .images import (MAX_VOXELS, PERCENTILE_SAMPLES, Image, derive_brainmask, finite_float,  # noqa: F401
                     image_like, lesion_values, normalise_flair, read_image, robust_range, save_atomic)
from .subject import (MIN_LESION_OVERLAP, PPB_RANGE, Subject, canonical_mask, guess_subject_id,  # noqa: F401
                      load_subject)
