"""The lesion library: real lesion shapes and positions from 30 expert consensus masks.

Rim classifiers key on lesion shape and on where a lesion sits (periventricular, juxtacortical),
so shapes are taken from real segmentations (open_ms_data, MNI 1 mm, Lesjak 2018) rather than
ellipsoids. Components are 26-connected; confluent masses above `lesion_max_mm3` are dropped,
because real PRL work rates discrete lesions.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import DATA, _load_ras

STRUCT26 = np.ones((3, 3, 3), bool)


@dataclass
class LibLesion:
    donor: str
    index: int  # component number within the donor mask
    corner: np.ndarray  # RAS 1 mm index of the crop's first voxel
    mask: np.ndarray  # bool crop (1 mm)
    volume_mm3: float

    def centroid_mm(self) -> np.ndarray:
        from .anatomy import MNI_ORIGIN_RAS

        c = np.argwhere(self.mask).mean(0)
        return self.corner + c + MNI_ORIGIN_RAS


def donors() -> list[str]:
    return sorted(p.name.split("_")[0] for p in (DATA / "masks").glob("patient*_lesions.nii.gz"))


@functools.lru_cache(maxsize=64)
def donor_lesions(donor: str, min_mm3: float, max_mm3: float) -> tuple:
    """The discrete lesions of one donor mask within the volume range (cached per process)."""
    mask = _load_ras(DATA / "masks" / f"{donor}_lesions.nii.gz") > 0
    lab, n = ndimage.label(mask, structure=STRUCT26)
    out = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        crop = lab[sl] == i
        vol = float(crop.sum())
        if not (min_mm3 <= vol <= max_mm3):
            continue
        out.append(LibLesion(donor, i, np.array([s.start for s in sl], float), crop, vol))
    return tuple(out)
