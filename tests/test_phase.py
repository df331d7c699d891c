"""Phase input: units, sidecars and sign detection give one local field in ppm; what is not an
unwrapped local field (wrapped phase, magnitude, rad given as ppm) is refused in one line."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from conftest import make_affine, tiny_subject
from rimscope.errors import InputError
from rimscope.patches import PatchConfig, extract_patches
from rimscope.phase import GAMMA_MHZ_T, detect_sign, load_phase_subject, to_ppm
from rimscope.simulate.physics import forward_field

B0_T, TE_MS = 3.0, 20.0
SHAPE = (40, 44, 36)


def _head(seed=0):
    """A tiny head: slightly diamagnetic 'white matter', an iron-rich 'deep grey matter' blob and
    paramagnetic veins at several angles to B0 (z), through forward_field, masked, with noise."""
    rng = np.random.default_rng(seed)
    qsm, flair, labels, brain = tiny_subject(SHAPE, seed=seed)
    zz = np.indices(SHAPE).astype(float)
    c = (np.array(SHAPE) - 1) / 2
    chi = np.where(brain, -0.02, 0.0)
    blob = ((zz[0] - c[0]) / 4) ** 2 + ((zz[1] - c[1] - 4) / 3) ** 2 + ((zz[2] - c[2]) / 3) ** 2 <= 1
    chi[blob] = 0.15
    for d in ([0, 0, 1], [1, 0, 0], [0.6, 0.3, 0.74], [0, 1, 1], [1, 1, 0.3]):
        d = np.array(d, float) / np.linalg.norm(d)
        p0 = c + rng.uniform(-8, 8, 3)
        rel = zz - p0[:, None, None, None]
        along = np.tensordot(d, rel, axes=1)
        perp2 = (rel ** 2).sum(0) - along ** 2
        chi[(perp2 <= 1.2 ** 2) & brain] = 0.4
    field = forward_field(chi.astype(np.float32), (1.0, 1.0, 1.0)) * brain
    field = field + rng.normal(0, 0.002, SHAPE) * brain
    return field.astype(np.float32), qsm, flair, labels, brain


def _save(data, path, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), make_affine() if affine is None else affine), str(path))
    return path


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    d = tmp_path_factory.mktemp("phase")
    field, qsm, flair, labels, brain = _head()
    files = {"flair": _save(flair, d / "flair.nii.gz"), "lesions": _save(labels, d / "les.nii.gz"),
             "brainmask": _save(brain.astype(np.uint8), d / "brain.nii.gz"),
             "qsm": _save(qsm, d / "qsm.nii.gz")}
    return d, field, files


def _ref(field):
    """The field as loaded: less its median over the brain (the field is 0 outside it)."""
    inside = field != 0
    return np.where(inside, field - np.median(field[inside]), 0).astype(np.float32)


def _load(phase, files, **kw):
    return load_phase_subject(phase, files["flair"], files["lesions"], files["brainmask"],
                              subject_id="01", **kw)


def test_conversions_follow_the_larmor_frequency():
    ppm = np.array([0.1], np.float32)
    hz = ppm * GAMMA_MHZ_T * B0_T  # 12.77 Hz at 3 T
    rad = 2 * np.pi * hz * TE_MS / 1000  # 1.605 rad at 20 ms
    assert hz[0] == pytest.approx(12.7731, abs=1e-3) and rad[0] == pytest.approx(1.6051, abs=1e-3)
    np.testing.assert_allclose(to_ppm(hz, "hz", field_t=B0_T), ppm, rtol=1e-6)
    np.testing.assert_allclose(to_ppm(rad, "rad", te_ms=TE_MS, field_t=B0_T), ppm, rtol=1e-6)


def test_hz_and_rad_give_the_same_field_and_patches(head):
    d, field, files = head
    hz = field * GAMMA_MHZ_T * B0_T
    rad = hz * 2 * np.pi * TE_MS / 1000
    s_ppm = _load(_save(field, d / "f_ppm.nii.gz"), files)
    s_hz = _load(_save(hz, d / "f_hz.nii.gz"), files, phase_units="hz", field_t=B0_T)
    s_rad = _load(_save(rad, d / "f_rad.nii.gz"), files, phase_units="rad", te_ms=TE_MS, field_t=B0_T)
    assert s_ppm.qsm is None and s_ppm.info["phase"]["sign_used"] == 1
    for s in (s_hz, s_rad):
        np.testing.assert_allclose(s.local_field, s_ppm.local_field, atol=1e-6)
    cfg = PatchConfig(size=12, source="phase")
    p_ppm, p_rad = extract_patches(s_ppm, cfg), extract_patches(s_rad, cfg)
    assert len(p_ppm) == 4
    np.testing.assert_allclose(p_rad.x, p_ppm.x, atol=1e-6)
    assert np.abs(p_ppm.x[:, 0]).max() > 0.01  # channel 0 holds the field, not zeros
    assert PatchConfig.from_dict(cfg.to_dict()) == cfg and "source" not in PatchConfig().to_dict()


def test_an_offset_of_the_local_field_does_not_change_the_patches(head):
    """Background removal leaves the field's offset arbitrary (a few ppb, as large as a lesion's
    field): a phase patch is read less its median, so an offset inside the brain changes nothing."""
    d, field, files = head
    brain = field != 0
    cfg = PatchConfig(size=12, source="phase")
    p0 = extract_patches(_load(_save(field, d / "f_off0.nii.gz"), files), cfg)
    p1 = extract_patches(_load(_save(field + 0.006 * brain, d / "f_off1.nii.gz"), files), cfg)
    np.testing.assert_allclose(p1.x, p0.x, atol=1e-6)
    assert np.abs(np.median(p0.x[:, 0].reshape(len(p0), -1), axis=1)).max() < 2e-3


def test_qsm_model_patches_refuse_a_phase_only_subject(head):
    d, field, files = head
    s = _load(_save(field, d / "f_only.nii.gz"), files)
    with pytest.raises(InputError, match="no qsm image"):
        extract_patches(s, PatchConfig(size=12))


def test_phase_beside_qsm_keeps_the_qsm(head):
    d, field, files = head
    s = load_phase_subject(_save(field, d / "f_q.nii.gz"), files["flair"], files["lesions"],
                           files["brainmask"], qsm=files["qsm"], subject_id="01")
    q = np.asarray(nib.load(str(files["qsm"])).dataobj)
    np.testing.assert_allclose(s.qsm, q)  # RAS input: canonical is the stored array
    np.testing.assert_allclose(s.local_field, _ref(field), atol=1e-6)
    assert s.paths["phase"].endswith("f_q.nii.gz") and "qsm" in s.paths


def test_sign_flipped_map_is_detected_and_flipped_back(head, caplog):
    d, field, files = head
    _, _, _, _, brain = _head()
    assert detect_sign(field, brain, (1, 1, 1)).sign == 1
    v = detect_sign(-field, brain, (1, 1, 1))
    assert v.sign == -1 and v.confidence >= 0.4
    s = _load(_save(-field, d / "f_neg.nii.gz"), files)
    np.testing.assert_allclose(s.local_field, _ref(field), atol=1e-6)
    assert s.info["phase"]["sign_used"] == -1 and any("inverted" in w for w in s.warnings)
    kept = _load(d / "f_neg.nii.gz", files, phase_sign="+1")
    np.testing.assert_allclose(kept.local_field, -_ref(field), atol=1e-6)
    assert any("look opposite" in w for w in kept.warnings)


def test_noise_only_map_sign_is_left_undecided():
    rng = np.random.default_rng(3)
    brain = tiny_subject(SHAPE)[3]
    noise = (rng.normal(0, 0.01, SHAPE) * brain).astype(np.float32)
    assert detect_sign(noise, brain, (1, 1, 1)).sign == 0


def test_wrapped_phase_is_refused(head):
    d, field, files = head
    rad = field * 40 * GAMMA_MHZ_T * B0_T * 2 * np.pi * TE_MS / 1000  # a strong field: many wraps
    rad += np.indices(SHAPE)[0] * 0.8 * (rad != 0)
    wrapped = np.angle(np.exp(1j * rad)).astype(np.float32) * (field != 0)
    with pytest.raises(InputError, match="wrapped.*ROMEO") as err:
        _load(_save(wrapped, d / "wrapped.nii.gz"), files, phase_units="rad", te_ms=TE_MS, field_t=B0_T)
    assert "wrapped.nii.gz" in str(err.value) and "\n" not in str(err.value)


def test_magnitude_given_as_phase_is_refused(head):
    d, field, files = head
    _, _, flair, _, brain = _head()
    mag = (flair * 3 + 50) * brain
    with pytest.raises(InputError, match="magnitude") as err:
        _load(_save(mag.astype(np.float32), d / "mag.nii.gz"), files)
    assert "mag.nii.gz" in str(err.value)


def test_rad_given_as_ppm_is_refused_with_the_units_flag(head):
    d, field, files = head
    rad = field * GAMMA_MHZ_T * B0_T * 2 * np.pi * TE_MS / 1000
    with pytest.raises(InputError, match="--phase-units rad"):
        _load(_save(rad, d / "rad_as_ppm.nii.gz"), files)
    short_te = rad * 0.5 / np.ptp(np.percentile(rad[rad != 0], [0.5, 99.5]))  # range 0.5: warned
    s = _load(_save(short_te, d / "short_te.nii.gz"), files)
    assert any("large for a local field" in w for w in s.warnings)
    assert not any("large for" in w for w in _load(_save(field, d / "ok.nii.gz"), files).warnings)


def test_sidecar_gives_te_field_and_units_and_flags_override_it(head):
    d, field, files = head
    rad = field * GAMMA_MHZ_T * B0_T * 2 * np.pi * TE_MS / 1000
    p = _save(rad, d / "sub-01_part-phase_T2starw.nii.gz")
    (d / "sub-01_part-phase_T2starw.json").write_text(json.dumps(
        {"EchoTime": TE_MS / 1000, "MagneticFieldStrength": B0_T, "Units": "rad"}))
    s = _load(p, files)
    np.testing.assert_allclose(s.local_field, _ref(field), atol=1e-6)
    assert s.info["phase"]["units"] == "rad" and s.info["phase"]["te_ms"] == pytest.approx(TE_MS)
    s2 = _load(p, files, te_ms=2 * TE_MS)
    np.testing.assert_allclose(s2.local_field, _ref(field) / 2, atol=1e-6)


def test_missing_echo_time_and_bad_units_are_one_line_errors(head):
    d, field, files = head
    p = _save(field, d / "f_plain.nii.gz")
    with pytest.raises(InputError, match="--te-ms") as err:
        _load(p, files, phase_units="rad", field_t=B0_T)
    assert "f_plain.nii.gz" in str(err.value)
    with pytest.raises(InputError, match="not one of ppm, hz, rad") as err:
        _load(p, files, phase_units="degrees")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="--phase-sign"):
        _load(p, files, phase_sign="up")


def test_filtered_phase_is_recorded_and_warned(head):
    d, field, files = head
    s = _load(_save(field, d / "f_filt.nii.gz"), files, phase_filtered=True)
    assert s.info["phase"]["filtered"] is True and any("filtered" in w for w in s.warnings)
