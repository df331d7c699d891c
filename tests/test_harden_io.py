"""Images without a world space (qform and sform codes 0): same grid accepted with a warning,
another grid refused in one line naming the file; Inf refused without a numpy warning."""
from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from conftest import centred_affine, tiny_subject, write_nii

from rimscope.errors import InputError
from rimscope.io import load_subject


def _write(tmp_path, role, arr, affine, world=True, zooms=None):
    p = tmp_path / f"sub-01_{role}.nii.gz"
    if world:
        write_nii(p, arr, affine)
    else:
        img = nib.Nifti1Image(arr, None)
        img.header["qform_code"], img.header["sform_code"] = 0, 0
        if zooms:
            img.header.set_zooms(zooms)
        nib.save(img, str(p))
    return p


@pytest.fixture
def arrays():
    qsm, flair, labels, _ = tiny_subject()
    return qsm, flair, (labels > 0).astype(np.uint8)


def test_same_grid_without_world_space_is_used_with_a_warning(tmp_path, arrays):
    qsm, flair, les = arrays
    aff = centred_affine(qsm.shape, codes="RAS")
    s = load_subject(_write(tmp_path, "qsm", qsm, aff), _write(tmp_path, "flair", flair, aff),
                     _write(tmp_path, "lesions", les, aff, world=False))
    assert any("no world space" in w and w.startswith("lesions") for w in s.warnings)
    # voxel for voxel: the lesion count is the mask's own (nibabel's guess is LAS: a resampling
    # through it would have mirrored the mask)
    assert int(s.lesions.max()) == 4
    assert np.array_equal(s.lesions > 0, les > 0)


@pytest.mark.parametrize("role", ["lesions", "flair"])
def test_other_grid_without_world_space_is_refused(tmp_path, arrays, role):
    qsm, flair, les = arrays
    aff = centred_affine(qsm.shape)
    paths = {"qsm": _write(tmp_path, "qsm", qsm, aff), "flair": _write(tmp_path, "flair", flair, aff),
             "lesions": _write(tmp_path, "lesions", les, aff)}
    small = (les if role == "lesions" else flair)[::2, ::2, ::2].copy()
    paths[role] = _write(tmp_path, role, small, None, world=False, zooms=(2.0, 2.0, 2.0))
    with pytest.raises(InputError) as e:
        load_subject(**paths)
    msg = str(e.value)
    assert e.value.path == str(paths[role]) and "\n" not in msg
    assert "qform and sform codes are both 0" in msg and "dcm2niix" in msg


def test_qsm_without_world_space_and_another_grid_names_the_qsm(tmp_path, arrays):
    qsm, flair, les = arrays
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = {"qsm": _write(tmp_path, "qsm", qsm, None, world=False),
             "flair": _write(tmp_path, "flair", flair[::2, ::2, ::2].copy(), aff),
             "lesions": _write(tmp_path, "lesions", les, None, world=False)}
    with pytest.raises(InputError) as e:
        load_subject(**paths)
    assert e.value.path == str(paths["qsm"])


def test_inf_is_refused_without_a_numpy_warning(tmp_path, arrays):
    qsm, flair, les = arrays
    qsm = qsm.copy()
    qsm[20, 20, 18], qsm[21, 20, 18] = np.inf, -np.inf
    aff = np.eye(4)
    paths = [_write(tmp_path, r, a, aff) for r, a in (("qsm", qsm), ("flair", flair), ("lesions", les))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="2 NaN/Inf"):
            load_subject(*paths)


def test_too_large_a_grid_is_refused_from_the_header_alone(tmp_path, arrays, monkeypatch):
    """The check needs only the header: a file whose data are cut off is refused for its size,
    not for being unreadable (the data were never read)."""
    import gzip

    import rimscope.io.images as rio_images

    qsm, flair, les = arrays
    monkeypatch.setattr(rio_images, "MAX_VOXELS", qsm.size - 1)
    buf = gzip.compress(nib.Nifti1Image(qsm, np.eye(4)).to_bytes())
    cut = tmp_path / "sub-01_qsm.nii.gz"
    cut.write_bytes(buf[: len(buf) // 3])
    paths = [cut] + [_write(tmp_path, r, a, np.eye(4)) for r, a in (("flair", flair), ("lesions", les))]
    with pytest.raises(InputError, match="M voxels, above rimscope's limit") as e:
        load_subject(*paths)
    assert e.value.path == str(cut)
    monkeypatch.setattr(rio_images, "MAX_VOXELS", qsm.size)
    with pytest.raises(InputError, match="cannot read qsm"):
        load_subject(*paths)
