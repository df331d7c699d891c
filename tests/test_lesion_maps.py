"""Label maps that are not lesion instance maps (LST-AI's annotated locations, SAMSEG's whole-brain
segmentation) are refused with what to pass; `--lesion-label N` takes one label; MGZ is read.

The fake outputs are laid out as the tools write them: LST-AI's folder holds
`space-flair_seg-lst.nii.gz` (binary) and `space-flair_desc-annotated_seg-lst.nii.gz` (1
periventricular, 2 juxtacortical, 3 subcortical, 4 infratentorial); SAMSEG's holds `seg.mgz`
(FreeSurfer labels: 2/41 white matter, 3/42 cortex, 4/43 ventricles, ..., 99 lesions).
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from conftest import tiny_subject
from rimscope.cli import main as cli_main
from rimscope.errors import InputError
from rimscope.io import lesion_values, load_subject


def _balls(shape, centres, r):
    zz = np.indices(shape)
    out = np.zeros(shape, bool)
    for c in centres:
        out |= ((zz - np.array(c)[:, None, None, None]) ** 2).sum(0) <= r * r
    return out


def _subject_files(folder, zooms=(1.0, 1.0, 1.0)):
    qsm, flair, labels, brain = tiny_subject()
    aff = np.diag([*zooms, 1.0])
    paths = {}
    for role, arr in (("qsm", qsm), ("flair", flair)):
        paths[role] = folder / f"sub-01_{role}.nii.gz"
        nib.save(nib.Nifti1Image(arr, aff), str(paths[role]))
    return paths, qsm.shape, aff, brain


def lst_ai(folder, shape, aff):
    """LST-AI's output folder: the binary mask and the annotated (location class) map."""
    rng = np.random.default_rng(1)
    annotated = np.zeros(shape, np.uint8)
    for label in (1, 2, 3, 4):  # five separate lesions per location class
        centres = [rng.integers(8, np.array(shape) - 8) for _ in range(5)]
        annotated[_balls(shape, centres, 1.6) & (annotated == 0)] = label
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(annotated, aff), str(folder / "space-flair_desc-annotated_seg-lst.nii.gz"))
    nib.save(nib.Nifti1Image((annotated > 0).astype(np.uint8), aff), str(folder / "space-flair_seg-lst.nii.gz"))
    return annotated


def samseg(folder, shape, aff, brain):
    """SAMSEG's seg.mgz: white matter (2, 41), cortex (3, 42), ventricles (4), lesions 99."""
    seg = np.zeros(shape, np.int32)
    x = np.indices(shape)[0]
    inner = _balls(shape, [(np.array(shape) - 1) / 2], min(shape) * 0.3)
    seg[brain] = np.where(x[brain] < shape[0] // 2, 3, 42)  # cortex
    seg[inner] = np.where(x[inner] < shape[0] // 2, 2, 41)  # white matter
    seg[_balls(shape, [(np.array(shape) - 1) / 2], 3)] = 4
    lesions = _balls(shape, [(14, 16, 14), (25, 27, 21), (14, 28, 22)], 2.2)
    seg[lesions] = 99
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.MGHImage(seg, aff), str(folder / "seg.mgz"))
    return seg


def test_lst_ai_annotated_map_refused_binary_taken(tmp_path):
    paths, shape, aff, _ = _subject_files(tmp_path, zooms=(2.0, 2.0, 2.0))  # 80 mm across
    out = tmp_path / "lst"
    annotated = lst_ai(out, shape, aff)
    with pytest.raises(InputError) as exc:
        load_subject(paths["qsm"], paths["flair"], out / "space-flair_desc-annotated_seg-lst.nii.gz")
    msg = str(exc.value)
    assert "\n" not in msg and "space-flair_desc-annotated_seg-lst" in msg
    assert "--lesion-label" in msg and "space-flair_seg-lst.nii.gz" in msg and "classes" in msg
    s = load_subject(paths["qsm"], paths["flair"], out / "space-flair_seg-lst.nii.gz")
    from scipy import ndimage

    n = ndimage.label(annotated > 0, structure=np.ones((3, 3, 3)))[1]
    assert s.info["lesion_map"] == "binary" and s.lesions.max() == n
    # one location class on request
    s = load_subject(paths["qsm"], paths["flair"], out / "space-flair_desc-annotated_seg-lst.nii.gz",
                     lesion_label=2)
    assert s.lesions.max() == ndimage.label(annotated == 2, structure=np.ones((3, 3, 3)))[1]


def test_samseg_segmentation_refused_then_label_99_taken(tmp_path, capsys):
    paths, shape, aff, brain = _subject_files(tmp_path, zooms=(3.0, 3.0, 3.0))
    samseg(tmp_path / "samseg", shape, aff, brain)
    seg = tmp_path / "samseg" / "seg.mgz"
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"subject\tqsm\tflair\tlesions\n01\t{paths['qsm']}\t{paths['flair']}\t{seg}\n")
    assert cli_main(["validate", "-i", str(manifest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "seg.mgz" in err[0] and "--lesion-label 99" in err[0] and "SAMSEG" in err[0]
    assert "Traceback" not in err[0]
    assert cli_main(["validate", "-i", str(manifest), "--lesion-label", "99"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split("\t")[1] == "3"  # three lesions, white matter not among them
    assert cli_main(["validate", "-i", str(manifest), "--lesion-label", "98"]) == 2
    err = capsys.readouterr().err
    assert "labels present: 2, 3, 4, 41, 42, 99" in err


def test_huge_component_refused_even_when_the_map_is_sparse():
    # 3 mm voxels: a 10x60x60 slab is 972 mL in one piece, 9 % of the image
    ids = np.zeros((40, 100, 100), np.int16)
    ids[5:15, 20:80, 20:80] = 2
    ids[30:32, 30:32, 30:32] = 7
    with pytest.raises(InputError, match="972 mL"):
        lesion_values(ids, "x.nii.gz", zooms=(3.0, 3.0, 3.0))
    assert lesion_values(ids, "x.nii.gz", zooms=(0.1, 0.1, 0.1))[0] == "instances"


def test_instance_maps_with_fragmented_lesions_still_accepted():
    # ids kept when a lesion lies in several nearby pieces (resampled or edited by hand) ...
    shape = (70, 70, 70)
    ids = np.zeros(shape, np.int32)
    for i, c in enumerate([(8, 8, 8), (30, 30, 30), (50, 12, 48)], start=1):
        ids[_balls(shape, [c], 2.5)] = i
    ids[_balls(shape, [(8, 15, 8), (15, 8, 8), (8, 8, 16)], 1.5)] = 1  # 4 pieces within 12 mm
    kind, out = lesion_values(ids, "x.nii.gz")
    assert kind == "instances" and set(np.unique(out)) == {0, 1, 2, 3}
    # ... but not when most labels are scattered over the brain (location classes)
    ids[_balls(shape, [(64, 64, 64)], 1.5)] = 2
    ids[_balls(shape, [(10, 60, 10)], 1.5)] = 3
    with pytest.raises(InputError, match="separate pieces across"):
        lesion_values(ids, "x.nii.gz")


def test_mgz_inputs_read_like_nifti(tmp_path):
    qsm, flair, labels, brain = tiny_subject()
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels.astype(np.int32))):
        nib.save(nib.MGHImage(arr, aff), str(tmp_path / f"sub-01_{role}.mgz"))
        nib.save(nib.Nifti1Image(arr, aff), str(tmp_path / f"sub-01_{role}.nii.gz"))
    a = load_subject(*(tmp_path / f"sub-01_{r}.mgz" for r in ("qsm", "flair", "lesions")))
    b = load_subject(*(tmp_path / f"sub-01_{r}.nii.gz" for r in ("qsm", "flair", "lesions")))
    assert a.id == "01"
    np.testing.assert_array_equal(a.qsm, b.qsm)
    np.testing.assert_array_equal(a.lesions, b.lesions)
    np.testing.assert_allclose(a.affine, b.affine)
    assert isinstance(a.original_image(a.lesions), nib.Nifti1Image)


def test_python_api_takes_lesion_label(tmp_path):
    import torch

    import rimscope
    from rimscope.models.registry import build

    paths, shape, aff, brain = _subject_files(tmp_path, zooms=(3.0, 3.0, 3.0))
    samseg(tmp_path / "samseg", shape, aff, brain)
    torch.manual_seed(0)
    model = build("asymmetric")
    with pytest.raises(InputError, match="--lesion-label"):
        rimscope.predict(paths["qsm"], paths["flair"], tmp_path / "samseg" / "seg.mgz", model=model,
                         device="cpu")
    rows = rimscope.predict(paths["qsm"], paths["flair"], tmp_path / "samseg" / "seg.mgz", model=model,
                            device="cpu", lesion_label=99)
    assert len(rows) == 3
