"""rimscope.cohort: manifests, BIDS discovery, labels, and their errors."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_subject, write_nii

from rimscope.cohort import check_labels, load_cohort, read_labels
from rimscope.errors import InputError


def _files(folder, names=("q", "f", "m")):
    folder.mkdir(parents=True, exist_ok=True)
    qsm, flair, labels, _ = tiny_subject()
    for n, a in zip(names, (qsm, flair, labels)):
        write_nii(folder / f"{n}.nii.gz", a, np.eye(4))


def test_manifest_tsv_csv_relative_paths(tmp_path):
    _files(tmp_path / "d")
    (tmp_path / "m.tsv").write_text("subject\tqsm\tflair\tlesions\nsub-01\td/q.nii.gz\td/f.nii.gz\td/m.nii.gz\n")
    (tmp_path / "m.csv").write_text("Subject,QSM,FLAIR,Lesions,brainmask\n02,d/q.nii.gz,d/f.nii.gz,d/m.nii.gz,\n")
    (tmp_path / "tabs.csv").write_text("subject\tqsm\tflair\tlesions\n03\td/q.nii.gz\td/f.nii.gz\td/m.nii.gz\n")
    a, = load_cohort(tmp_path / "m.tsv")
    assert a.subject == "01" and a.qsm == tmp_path / "d" / "q.nii.gz" and a.brainmask is None
    b, = load_cohort(tmp_path / "m.csv")
    assert b.subject == "02" and set(b.paths()) == {"qsm", "flair", "lesions"}
    assert load_cohort(tmp_path / "tabs.csv")[0].subject == "03"


@pytest.mark.parametrize("text,match", [
    ("subject\tqsm\tflair\tlesions\n01\td/q.nii.gz\td/f.nii.gz\td/m.nii.gz\n"
     "sub-01\td/q.nii.gz\td/f.nii.gz\td/m.nii.gz\n", "appears twice"),
    ("subject\tqsm\tlesions\n01\td/q.nii.gz\td/m.nii.gz\n", "lacks column"),
    ("subject\tqsm\tflair\tlesions\n01\td/q.nii.gz\td/nope.nii.gz\td/m.nii.gz\n", "not found"),
    ("subject\tqsm\tflair\tlesions\n", "no subjects"),
])
def test_manifest_errors(tmp_path, text, match):
    _files(tmp_path / "d")
    (tmp_path / "m.tsv").write_text(text)
    with pytest.raises(InputError, match=match) as err:
        load_cohort(tmp_path / "m.tsv")
    assert err.value.path == str(tmp_path / "m.tsv")
    assert "\n" not in str(err.value)


def test_missing_file_listed_not_fatal_with_problems(tmp_path):
    _files(tmp_path / "d")
    (tmp_path / "m.tsv").write_text("subject\tqsm\tflair\tlesions\n01\td/q.nii.gz\td/x.nii.gz\td/m.nii.gz\n"
                                    "02\td/q.nii.gz\td/f.nii.gz\td/m.nii.gz\n")
    problems = []
    entries = load_cohort(tmp_path / "m.tsv", problems=problems)
    assert [e.subject for e in entries] == ["02"]
    assert problems[0][0] == "01" and "x.nii.gz" in str(problems[0][1])
    with pytest.raises(InputError):
        load_cohort(tmp_path / "nope.tsv")


def test_bids_discovery(tmp_path):
    root = tmp_path / "bids"
    _files(root / "sub-01" / "anat", ("sub-01_Chimap", "sub-01_FLAIR", "sub-01_T1w"))
    _files(root / "derivatives" / "seg" / "sub-01" / "anat", ("sub-01_desc-lesions_mask",
                                                               "sub-01_desc-brain_mask", "x"))
    # a session, lesions as dseg, Chimap written by a QSM pipeline under derivatives
    _files(root / "sub-02" / "ses-1" / "anat", ("sub-02_ses-1_FLAIR", "a", "b"))
    _files(root / "derivatives" / "qsmxt" / "sub-02" / "ses-1" / "anat", ("sub-02_ses-1_Chimap", "c", "d"))
    _files(root / "derivatives" / "seg" / "sub-02" / "ses-1" / "anat",
           ("sub-02_ses-1_desc-lesions_dseg", "e", "f"))
    entries = {e.subject: e for e in load_cohort(root)}
    assert set(entries) == {"01", "02_ses-1"}
    a = entries["01"]
    assert a.qsm.name == "sub-01_Chimap.nii.gz" and a.flair.name == "sub-01_FLAIR.nii.gz"
    assert a.lesions.name == "sub-01_desc-lesions_mask.nii.gz"
    assert a.brainmask.name == "sub-01_desc-brain_mask.nii.gz"
    b = entries["02_ses-1"]
    assert "qsmxt" in b.qsm.parts and b.lesions.name.endswith("_desc-lesions_dseg.nii.gz")
    assert b.brainmask is None


def test_bids_errors(tmp_path):
    root = tmp_path / "bids"
    _files(root / "sub-01" / "anat", ("sub-01_Chimap", "sub-01_FLAIR", "z"))
    with pytest.raises(InputError, match="desc-lesions_mask"):
        load_cohort(root)
    problems = []
    assert load_cohort(root, problems=problems) == [] and problems[0][0] == "01"
    with pytest.raises(InputError, match="BIDS"):
        load_cohort(tmp_path / "bids" / "sub-01")  # a folder without sub-*/anat


def test_labels_read_and_checked(tmp_path):
    p = tmp_path / "labels.tsv"
    p.write_text("subject\tlesion_id\trim\trater\nsub-01\t1\t1\ta\n01\t1\t0\tb\n01\t2\t0\ta\n02\t7\t1\ta\n")
    labels = read_labels(p)
    assert labels == {("01", 1): 1, ("01", 2): 0, ("02", 7): 1}  # a tie goes to Rim+
    check_labels(labels, {"01": {1, 2}, "02": {7}})
    with pytest.raises(InputError, match="lesion 7 of subject 02, which does not exist"):
        check_labels(labels, {"01": {1, 2}, "02": {1, 3}}, p)
    with pytest.raises(InputError, match="not in the cohort"):
        check_labels(labels, {"01": {1, 2}}, p)
    bad = tmp_path / "bad.tsv"
    for text, match in (("subject\tlesion\trim\n01\t1\t1\n", "lack column"),
                        ("subject\tlesion_id\trim\n01\t1\t2\n", "0 or 1"),
                        ("subject\tlesion_id\trim\n01\tone\t1\n", "integers"),
                        ("subject\tlesion_id\trim\n", None)):
        bad.write_text(text)
        if match is None:
            assert read_labels(bad) == {}
            continue
        with pytest.raises(InputError, match=match):
            read_labels(bad)
