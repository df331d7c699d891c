"""Where a simulated cohort's files go (BIDS-like, relative to the cohort folder): the writer
puts them there and the montage reads them back, so both take the names from here."""
from __future__ import annotations


def subject_id(i: int) -> str:
    return f"{i + 1:03d}"


def subject_paths(sid: str) -> dict:
    """{role: path relative to the cohort folder} for qsm, flair, lesions, brainmask, phase (the
    local field, ppm: rimscope.phase), truth."""
    a = f"sub-{sid}/anat/sub-{sid}"
    return {"qsm": f"{a}_Chimap.nii.gz", "flair": f"{a}_FLAIR.nii.gz",
            "lesions": f"{a}_desc-lesions_dseg.nii.gz", "brainmask": f"{a}_desc-brain_mask.nii.gz",
            "phase": f"{a}_desc-localfield_phase.nii.gz",
            "truth": f"sub-{sid}/sub-{sid}_truth.json"}


def rimtruth_path(sid: str) -> str:
    """The rim voxel truth (uint8 mask on the QSM grid), beside the images but not an input."""
    return f"sub-{sid}/anat/sub-{sid}_desc-rimtruth_mask.nii.gz"
