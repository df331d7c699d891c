"""BIDS discovery on folders laid out exactly as QSMxT v8 and v9 write them (rimscope.cohort_bids)."""
from __future__ import annotations

import pytest
from conftest import write_qsmxt_dataset

from rimscope.cohort import discover, load_cohort
from rimscope.cohort_bids import entities, entry_id, id_entities, id_from_path
from rimscope.errors import InputError


def test_v9_main_map_by_rule_and_runs_as_entries(tmp_path):
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": ["pre", "post"], "02": [(None, "run-1"), (None, "run-2")]},
                               separation=True)
    entries = {e.subject: e for e in load_cohort(root)}
    assert set(entries) == {"01_ses-pre", "01_ses-post", "02_run-1", "02_run-2"}
    e = entries["01_ses-pre"]
    assert e.qsm.name == "sub-01_ses-pre_Chimap.nii" and "qsmxt" in e.qsm.parts
    assert e.flair.name == "sub-01_ses-pre_FLAIR.nii.gz" and e.lesions.name.endswith("_desc-lesions_mask.nii.gz")
    why = e.why["qsm"]
    assert "main (two-pass) map" in why and "desc-singlepass" in why and "source-separation" in why
    assert entries["02_run-2"].qsm.name == "sub-02_run-2_Chimap.nii"
    assert entries["02_run-2"].lesions.name == "sub-02_run-2_desc-lesions_mask.nii.gz"  # matched by run
    assert entries["02_run-1"].flair == entries["02_run-2"].flair  # one FLAIR for both runs


def test_singlepass_taken_when_alone(tmp_path):
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": [None]})
    (root / "derivatives/qsmxt/sub-01/anat/sub-01_Chimap.nii").unlink()
    (e,) = load_cohort(root)
    assert e.qsm.name == "sub-01_desc-singlepass_Chimap.nii" and "desc-singlepass" in e.why["qsm"]


def test_only_separation_maps_is_a_skip_not_a_guess(tmp_path):
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": [None], "02": [None]}, singlepass=False, separation=True)
    (root / "derivatives/qsmxt/sub-01/anat/sub-01_Chimap.nii").unlink()
    assert [e.subject for e in load_cohort(root)] == ["02"]


def test_v8_timestamped_folders_newest_wins_and_both_named(tmp_path, caplog):
    old, new = "qsmxt-2023-11-02_10-00-00", "qsmxt-2024-03-01_09-30-00"
    root = write_qsmxt_dataset(tmp_path / "bids", {"1": ["1"]}, qsmxt_folders=(new, old))
    (e,) = load_cohort(root)
    assert e.subject == "1_ses-1" and new in e.qsm.parts
    assert old in e.why["qsm"] and new in e.why["qsm"] and "newest" in e.why["qsm"]
    assert old in caplog.text and new in caplog.text


def test_two_main_maps_in_one_folder_fail_that_subject_only(tmp_path):
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": [None], "02": [None]})
    d = root / "derivatives/qsmxt/sub-01/anat"
    (d / "sub-01_Chimap.nii.gz").write_bytes((d / "sub-01_Chimap.nii").read_bytes())
    problems = []
    assert [e.subject for e in load_cohort(root, problems)] == ["02"]
    (sid, err), = problems
    assert sid == "01" and "two main Chimaps" in str(err) and "sub-01_Chimap.nii.gz" in str(err)
    with pytest.raises(InputError, match="two main Chimaps"):
        load_cohort(root)


def test_subject_and_session_filters(tmp_path):
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": ["pre", "post"], "02": ["pre"]})
    pick = lambda **kw: sorted(e.subject for e in discover(root, **kw))  # noqa: E731
    assert pick(subjects=["sub-01"]) == ["01_ses-post", "01_ses-pre"]
    assert pick(sessions=["pre"]) == ["01_ses-pre", "02_ses-pre"]
    assert pick(subjects=["02"], sessions=["ses-pre"]) == ["02_ses-pre"]
    with pytest.raises(InputError, match="no subject matches"):
        discover(root, subjects=["03"])
    # a problem of a filtered-out subject is not reported
    (root / "derivatives/lesions/sub-02/ses-pre/anat/sub-02_ses-pre_desc-lesions_mask.nii.gz").unlink()
    problems = []
    assert [e.subject for e in discover(root, subjects=["01"], problems=problems)] == ["01_ses-post", "01_ses-pre"]
    assert problems == []
    discover(root, problems=problems)
    assert [p[0] for p in problems] == ["02_ses-pre"]


def test_ids_and_single_subject_session(tmp_path):
    assert entities("sub-01_ses-pre_acq-x_run-2_Chimap.nii") == (
        {"sub": "01", "ses": "pre", "acq": "x", "run": "2"}, "Chimap")
    assert entry_id({"run": "2", "sub": "01", "acq": "x", "ses": "pre", "desc": "y"}) == "01_ses-pre_acq-x_run-2"
    assert id_entities("01_ses-pre_run-2") == {"sub": "01", "ses": "pre", "run": "2"}
    assert id_entities("pat_001") == {"sub": "pat_001"}
    assert id_from_path(tmp_path / "ses-post" / "anat" / "sub-01_Chimap.nii") == "01_ses-post"
    assert id_from_path("sub-01_Chimap.nii", session="pre") == "01_ses-pre"
    assert id_from_path("qsm.nii") is None
    root = write_qsmxt_dataset(tmp_path / "bids", {"01": ["pre"]})
    d = root / "derivatives"
    files = dict(qsm=d / "qsmxt/sub-01/ses-pre/anat/sub-01_ses-pre_Chimap.nii",
                 flair=root / "sub-01/ses-pre/anat/sub-01_ses-pre_FLAIR.nii.gz",
                 lesions=d / "lesions/sub-01/ses-pre/anat/sub-01_ses-pre_desc-lesions_mask.nii.gz")
    assert discover(**files)[0].subject == "01_ses-pre"
    assert discover(**files, subject="07", session="b")[0].subject == "07_ses-b"
