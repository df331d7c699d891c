"""rimscope.io: the input contract (read, validate, canonicalise, resample) and exact write-back."""
from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from conftest import centred_affine, phantom_on_grid, tiny_subject, to_orientation, write_nii

from rimscope.errors import InputError
from rimscope.io import load_subject, save_atomic

ORIENTATIONS = [("RAS", (1, 1, 1), 0), ("LPS", (1, 1, 1), 0), ("LAS", (0.9, 0.75, 1.3), 0),
                ("PSR", (1, 1, 1), 0), ("LPS", (0.8, 0.8, 1.1), 17), ("RAS", (1, 1, 1), -25)]


def _write_case(tmp_path, codes, zooms, rot, qform_code=1, sform_code=2):
    """A tiny subject stored in the given orientation / voxel size / obliquity; QSM header with
    distinct qform and sform codes and non-default units so write-back can be checked."""
    qsm, flair, labels, _ = tiny_subject()
    paths = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels)):
        data, aff = to_orientation(arr, codes, zooms=zooms, rot_deg=rot)
        img = nib.Nifti1Image(data, aff)
        img.header.set_qform(aff, code=qform_code)
        img.header.set_sform(aff, code=sform_code)
        img.header.set_xyzt_units("mm", "sec")
        paths[role] = tmp_path / f"sub-01_{role}.nii.gz"
        nib.save(img, str(paths[role]))
    return paths


@pytest.mark.parametrize("codes,zooms,rot", ORIENTATIONS)
def test_write_back_is_voxel_exact(tmp_path, codes, zooms, rot):
    paths = _write_case(tmp_path, codes, zooms, rot)
    s = load_subject(**paths)
    assert s.info["orientation"] == codes
    assert s.info["oblique"] == bool(rot)
    # canonical RAS internally: the affine's diagonal is positive for axis-aligned inputs
    if not rot:
        assert np.all(np.diag(s.affine)[:3] > 0)
    orig = nib.load(str(paths["qsm"]))
    for array, role, dtype in ((s.qsm, "qsm", np.float32), (s.lesions, "lesions", np.int32)):
        out = tmp_path / f"out_{role}.nii.gz"
        save_atomic(s.original_image(array, dtype), out)
        back = nib.load(str(out))
        src = nib.load(str(paths[role]))
        np.testing.assert_array_equal(np.asanyarray(back.dataobj), np.asanyarray(src.dataobj))
        np.testing.assert_array_equal(back.affine, orig.affine)
        for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "quatern_b", "quatern_c",
                    "quatern_d", "qoffset_x", "srow_x", "srow_y", "srow_z"):
            np.testing.assert_array_equal(back.header[key], orig.header[key], err_msg=key)


def test_write_back_keeps_distinct_qform_and_sform(tmp_path):
    qsm, flair, labels, _ = tiny_subject()
    _, aff = to_orientation(qsm, "LPS")
    q_aff = aff.copy()
    q_aff[:3, 3] += [2.0, -3.0, 1.0]  # scanner qform differs from the (registered) sform
    paths = {}
    for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", labels)):
        data, _ = to_orientation(arr, "LPS")
        img = nib.Nifti1Image(data, aff)
        img.header.set_qform(q_aff, code=1)
        img.header.set_sform(aff, code=4)
        paths[role] = tmp_path / f"{role}.nii"
        nib.save(img, str(paths[role]))
    s = load_subject(**paths)
    out = tmp_path / "prob.nii.gz"
    save_atomic(s.original_image(s.qsm * 2), out)
    back, orig = nib.load(str(out)), nib.load(str(paths["qsm"]))
    np.testing.assert_array_equal(back.header.get_qform(), orig.header.get_qform())
    np.testing.assert_array_equal(back.header.get_sform(), orig.header.get_sform())
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 4)
    np.testing.assert_allclose(np.asanyarray(back.dataobj), np.asanyarray(orig.dataobj) * 2)


def test_4d_singleton_accepted_and_written_back_4d(tmp_path, subject_files):
    qsm = nib.load(str(subject_files["qsm"]))
    data4 = np.asanyarray(qsm.dataobj)[..., None]
    img = nib.Nifti1Image(data4, qsm.affine)
    img.header["pixdim"][4] = 2.5
    p = tmp_path / "qsm4d.nii.gz"
    nib.save(img, str(p))
    s = load_subject(p, subject_files["flair"], subject_files["lesions"])
    assert s.qsm.ndim == 3
    out = tmp_path / "o.nii.gz"
    save_atomic(s.original_image(s.qsm), out)
    back = nib.load(str(out))
    assert back.shape == data4.shape
    assert back.header["pixdim"][4] == pytest.approx(2.5)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data4)


def test_scaled_int16_qsm_is_read_in_ppm(tmp_path, subject_files):
    qsm = np.asanyarray(nib.load(str(subject_files["qsm"])).dataobj)
    raw = np.round(qsm / 1e-4).astype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(1e-4, 0)
    p = tmp_path / "q16.nii"
    nib.save(img, str(p))
    s = load_subject(p, subject_files["flair"], subject_files["lesions"])
    np.testing.assert_allclose(s.qsm, raw * np.float32(1e-4), atol=1e-7)


@pytest.mark.parametrize("kind", ["nan", "4d", "empty", "probability", "ppb", "no_overlap",
                                  "flair_elsewhere", "negative", "garbage", "truncated", "missing",
                                  "complex"])
def test_bad_inputs_raise_one_line_input_error(tmp_path, subject_files, kind):
    paths = dict(subject_files)
    src = {r: nib.load(str(p)) for r, p in paths.items()}
    data = {r: np.asanyarray(img.dataobj) for r, img in src.items()}
    bad_role = {"nan": "qsm", "4d": "qsm", "ppb": "qsm", "complex": "qsm", "empty": "lesions",
                "probability": "lesions", "no_overlap": "lesions", "negative": "lesions",
                "flair_elsewhere": "flair", "garbage": "flair", "truncated": "flair",
                "missing": "flair"}[kind]
    p = tmp_path / f"bad_{bad_role}.nii.gz"
    arr, aff = data[bad_role], np.eye(4)
    if kind == "nan":
        arr = arr.copy()
        arr[0, 0, 0] = np.nan
    elif kind == "4d":
        arr = np.stack([arr, arr], axis=-1)
    elif kind == "ppb":
        arr = arr * 1000
    elif kind == "complex":
        arr = arr.astype(np.complex64)
    elif kind == "empty":
        arr = np.zeros_like(arr)
    elif kind == "probability":
        arr = arr.astype(np.float32) * 0.7
    elif kind == "negative":
        arr = arr.astype(np.int16) * -1
    elif kind in ("no_overlap", "flair_elsewhere"):
        aff = np.eye(4)
        aff[:3, 3] = [0, 0, 30]  # same shape, shifted 30 mm: most of it outside the QSM
    if kind == "garbage":
        p.write_bytes(b"this is not a nifti" * 20)
    elif kind == "truncated":
        raw = paths[bad_role].read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    elif kind != "missing":
        write_nii(p, arr, aff)
    paths[bad_role] = p
    with pytest.raises(InputError) as err:
        load_subject(**paths)
    msg = str(err.value)
    assert "\n" not in msg
    assert err.value.path == str(p)
    assert msg.startswith(str(p))
    expected = {"nan": "NaN", "4d": "4D", "ppb": "--qsm-units ppb", "empty": "empty",
                "probability": "non-integer", "no_overlap": "QSM field of view",
                "flair_elsewhere": "FLAIR field of view", "negative": "negative",
                "garbage": "cannot read", "truncated": "cannot read", "missing": "not found",
                "complex": "real numbers"}[kind]
    assert expected in msg


def test_ppb_units_flag_scales(tmp_path, subject_files):
    q = nib.load(str(subject_files["qsm"]))
    qsm = np.asanyarray(q.dataobj)
    p = write_nii(tmp_path / "qsm_ppb.nii.gz", (qsm * 1000).astype(np.float32), q.affine)
    s = load_subject(p, subject_files["flair"], subject_files["lesions"], qsm_units="ppb")
    np.testing.assert_allclose(s.qsm, qsm, atol=1e-6)
    assert s.info["units_guess"] == "ppb"


def test_different_grid_flair_and_mask_resampled_with_warning(tmp_path, caplog):
    shape = (44, 48, 40)
    ref_aff = centred_affine(shape, "RAS", zooms=(1, 1, 1))
    qsm, flair, mask = phantom_on_grid(shape, ref_aff)
    # FLAIR and mask of the same session on a coarser LPS grid
    shape2 = (34, 36, 30)
    aff2 = centred_affine(shape2, "LPS", zooms=(1.3, 1.3, 1.4))
    _, flair2, mask2 = phantom_on_grid(shape2, aff2)
    bm2 = (flair2 > 50).astype(np.uint8)
    p = {"qsm": write_nii(tmp_path / "q.nii.gz", qsm, ref_aff),
         "flair": write_nii(tmp_path / "f.nii.gz", flair2, aff2),
         "lesions": write_nii(tmp_path / "l.nii.gz", mask2, aff2),
         "brainmask": write_nii(tmp_path / "b.nii.gz", bm2, aff2)}
    with caplog.at_level(logging.WARNING, logger="rimscope"):
        s = load_subject(**p)
    assert s.qsm.shape == shape
    assert len(s.warnings) == 3 and all("resampled" in w for w in s.warnings)
    assert sum("resampled" in r.getMessage() for r in caplog.records) == 3
    # the resampled mask lands on the true lesions: high overlap with the mask drawn on the QSM grid
    dice = 2 * np.sum((s.lesions > 0) & (mask > 0)) / (np.sum(s.lesions > 0) + np.sum(mask > 0))
    assert dice > 0.8
    assert s.lesions.max() == 2  # two components


def test_mask_mostly_outside_qsm_fov_refused_but_80_percent_accepted(tmp_path):
    shape = (30, 30, 30)
    aff = np.eye(4)
    qsm = np.full(shape, 0.01, np.float32)
    flair = np.full(shape, 100, np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[:, 10:20, 10:20] = 1  # a 30-voxel-long bar along x
    base = {"qsm": write_nii(tmp_path / "q.nii", qsm, aff), "flair": write_nii(tmp_path / "f.nii", flair, aff)}
    for shift, ok in ((5, True), (9, False)):  # 5/30 = 17 % out; 9/30 = 30 % out
        a = aff.copy()
        a[0, 3] = shift
        base["lesions"] = write_nii(tmp_path / f"l{shift}.nii", mask, a)
        if ok:
            s = load_subject(**base)
            assert np.sum(s.lesions > 0) == 25 * 100
        else:
            with pytest.raises(InputError, match="70% of lesion voxels"):
                load_subject(**base)


def test_nan_outside_brain_is_refused_with_the_fix(tmp_path, subject_files):
    q = nib.load(str(subject_files["qsm"]))
    data = np.asanyarray(q.dataobj).copy()
    data[data == 0] = np.nan  # how many pipelines mask the background
    p = write_nii(tmp_path / "qnan.nii.gz", data, q.affine)
    with pytest.raises(InputError, match="fslmaths"):
        load_subject(p, subject_files["flair"], subject_files["lesions"])


def test_lesion_map_kinds(tmp_path):
    qsm, flair, labels, _ = tiny_subject()
    aff = np.eye(4)
    q = write_nii(tmp_path / "q.nii", qsm, aff)
    f = write_nii(tmp_path / "f.nii", flair, aff)
    # float 0/1 mask: components
    s = load_subject(q, f, write_nii(tmp_path / "m.nii", (labels > 0).astype(np.float32), aff))
    assert s.info["lesion_map"] == "binary" and s.lesions.max() == 4
    # 0/255 mask: still binary
    s = load_subject(q, f, write_nii(tmp_path / "m255.nii", (labels > 0).astype(np.uint8) * 255, aff))
    assert s.info["lesion_map"] == "binary" and set(np.unique(s.lesions)) == {0, 1, 2, 3, 4}
    # an instance map keeps its ids, even large and with gaps
    inst = np.where(labels > 0, labels * 1000 + 7, 0).astype(np.int32)
    s = load_subject(q, f, write_nii(tmp_path / "inst.nii", inst, aff))
    assert s.info["lesion_map"] == "instances"
    assert set(np.unique(s.lesions)) == {0, 1007, 2007, 3007, 4007}


def test_binary_ids_do_not_depend_on_stored_orientation(tmp_path):
    qsm, flair, labels, _ = tiny_subject()
    ids = {}
    for codes in ("RAS", "LPS", "PSR"):
        d = tmp_path / codes
        d.mkdir()
        p = {}
        for role, arr in (("qsm", qsm), ("flair", flair), ("lesions", (labels > 0).astype(np.uint8))):
            data, aff = to_orientation(arr, codes)
            p[role] = write_nii(d / f"{role}.nii", data, aff)
        s = load_subject(**p)
        ids[codes] = s.lesions
    np.testing.assert_array_equal(ids["RAS"], ids["LPS"])
    np.testing.assert_array_equal(ids["RAS"], ids["PSR"])


def test_images_as_objects_and_flair_normalisation(subject_files):
    imgs = {r: nib.load(str(p)) for r, p in subject_files.items()}
    s = load_subject(imgs["qsm"], imgs["flair"], imgs["lesions"], subject_id="x")
    assert s.id == "x"
    assert abs(float(np.median(s.flair[s.brainmask]))) < 0.02
    lo, hi = np.percentile(s.flair[s.brainmask], [0.5, 99.5])
    assert hi - lo == pytest.approx(1.0, abs=0.02)
    # padding value for "no signal": raw 0 after normalisation, i.e. the background
    assert s.info["flair_background"] == pytest.approx(float(s.flair[0, 0, 0]), abs=1e-5)
