"""Where a simulated cohort's files go (BIDS-like, relative to the cohort folder): the writer
puts them there and the montage reads them back, so both take the names from here."""
from __future__ import annotations


def subject_id(i: int) -> str:
    return f"{i + 1:03d}"


def subject_paths(sid: str) -> dict:
    """{role: path relative to the cohort folder} for qsm, flair, lesions, brainmask, truth."""
    a = f"sub-{sid}/anat/sub-{sid}"
    return {"qsm": f"{a}_Chimap.nii.gz", "flair": f"{a}_FLAIR.nii.gz",
            "lesions": f"{a}_desc-lesions_dseg.nii.gz", "brainmask": f"{a}_desc-brain_mask.nii.gz",
            "truth": f"sub-{sid}/sub-{sid}_truth.json"}
