"""The review API through Starlette's ASGI test client: token, id and parameter checks, ratings,
export and agreement. A tiny two-subject cohort with a predictions folder is built once."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # starlette 1.x nags about httpx vs httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from test_review_support import PROBS, make_review_cohort  # noqa: E402
from rimscope.inference.outputs import lesions_tsv  # noqa: E402

TOKEN = "t0k-" + "x" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_LESIONS = sum(len(v) for v in PROBS.values())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_review_cohort(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def client(cohort, tmp_path_factory):
    """Shared by the tests that must write nothing (they check the store stays empty); tests that
    write build their own with `_app`."""
    c = _app(cohort, tmp_path_factory.mktemp("db"))
    yield c
    assert c.store.count() == 0


ROUTES = ["/", "/static/app.js", "/api/meta", "/api/lesions", "/api/lesion?subject=01&lesion_id=1",
          "/api/view?subject=01&lesion_id=1", "/api/agreement", "/api/export"]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_needs_the_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    sep = "&" if "?" in path else "?"
    assert client.get(path + sep + "token=" + TOKEN[:-1]).status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200


def test_post_needs_the_token_and_writes_nothing_without_it(cohort, tmp_path):
    client = _app(cohort, tmp_path)
    body = {"subject": "01", "lesion_id": 1, "rating": "rim+", "rater": "eve"}
    assert client.post("/api/rate", json=body).status_code == 401
    assert client.store.count() == 0
    assert client.post("/api/rate", json=body, headers=AUTH).status_code == 200
    assert client.store.count() == 1


def test_first_visit_sets_a_cookie_and_drops_the_token_from_the_url(cohort, tmp_path):
    client = _app(cohort, tmp_path)  # its own: the cookie it keeps must not reach other tests
    r = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    r = client.get("/api/meta")  # the client keeps the cookie
    assert r.status_code == 200 and r.json()["default_rater"] == "alice"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    client.cookies.clear()
    assert client.get("/api/meta").status_code == 401


CRAFTED_SUBJECTS = ["../../etc/passwd", "..", "01/../02", "1 OR 1=1", "01' OR '1'='1", "01;--",
                    "sub-01", "", " 01", "%2e%2e%2f", "01\x00", "a" * 65, "/etc/passwd", "03"]
CRAFTED_LESIONS = ["99999999999999999999999", "9" * 5000, "2147483648", "0", "-1", "1.0", "1e3",
                   "0x1", "abc", "", " 1", "1 OR 1=1", "../1", "5"]


@pytest.mark.parametrize("subject", CRAFTED_SUBJECTS)
def test_crafted_subject_ids_are_refused(client, subject):
    for path in ("/api/lesion", "/api/view"):
        r = client.get(path, params={"subject": subject, "lesion_id": "1"}, headers=AUTH)
        assert 400 <= r.status_code < 500, (path, subject, r.status_code)
    r = client.post("/api/rate", json={"subject": subject, "lesion_id": 1, "rating": "rim+"}, headers=AUTH)
    assert 400 <= r.status_code < 500
    assert client.store.count() == 0


@pytest.mark.parametrize("lesion", CRAFTED_LESIONS)
def test_crafted_lesion_ids_are_refused(client, lesion):
    for path in ("/api/lesion", "/api/view"):
        r = client.get(path, params={"subject": "01", "lesion_id": lesion}, headers=AUTH)
        assert 400 <= r.status_code < 500, (path, lesion, r.status_code)


@pytest.mark.parametrize("lesion_id", [10**30, -1, 0, 5, "1", 1.5, True, None, [1], {"a": 1}])
def test_crafted_json_lesion_ids_are_refused(client, lesion_id):
    r = client.post("/api/rate", json={"subject": "01", "lesion_id": lesion_id, "rating": "rim+"},
                    headers=AUTH)
    assert 400 <= r.status_code < 500
    assert client.store.count() == 0


@pytest.mark.parametrize("query", [
    "modality=t1", "modality=../qsm", "plane=oblique", "offset=999", "offset=-999", "offset=1.5",
    "vmin=nan", "vmin=inf", "vmin=1e308", "vmin=0.2&vmax=0.1", "vmin=0.1&vmax=0.1", "contour=yes",
    "path=/etc/passwd", "offset=1&offset=2",
])
def test_view_parameters_are_validated(client, query):
    r = client.get(f"/api/view?subject=01&lesion_id=1&{query}", headers=AUTH)
    assert r.status_code == 400, (query, r.status_code, r.text)
    assert "error" in r.json()


@pytest.mark.parametrize("body", [
    {"rating": "maybe"}, {"rating": 1}, {"rater": "model"}, {"rater": "../x"}, {"rater": "a" * 41},
    {"rater": 7}, {"confidence": 1.5}, {"confidence": -0.1}, {"confidence": "high"},
    {"confidence": float("nan")}, {"extra": 1},
])
def test_rate_body_is_validated(client, body):
    full = {"subject": "01", "lesion_id": 1, "rating": "rim+", "rater": "alice", **body}
    r = client.post("/api/rate", content=json.dumps(full), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400, (body, r.text)
    assert client.store.count() == 0


def test_rate_transport_is_validated(client):
    ok = {"subject": "01", "lesion_id": 1, "rating": "rim+"}
    assert client.post("/api/rate", data={"x": "1"}, headers=AUTH).status_code == 415
    big = json.dumps({**ok, "rater": "a" * 5000})
    r = client.post("/api/rate", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.post("/api/rate", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/api/rate", content=b"[1, 2]", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert client.get("/api/rate", headers=AUTH).status_code == 405
    assert client.store.count() == 0


@pytest.mark.parametrize("name", ["../../pyproject.toml", "index.html", "..%2f..%2fcli.py", "app.js.map"])
def test_static_files_come_from_a_fixed_table(client, name):
    assert client.get(f"/static/{name}", headers=AUTH).status_code == 404


def test_page_and_assets_are_served(client):
    html = client.get("/", headers=AUTH).text
    assert "/static/app.js" in html and "http" not in html.replace("http-equiv", "")  # no CDN
    js = client.get("/static/app.js", headers=AUTH)
    assert js.headers["content-type"].startswith("text/javascript") and "/api/rate" in js.text


def _png(r):
    import matplotlib.image as mpimg

    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return (mpimg.imread(io.BytesIO(r.content), format="png")[..., :3] * 255).round().astype(int)


def test_views_show_the_lesion_outline_and_follow_the_window(client):
    base = "/api/view?subject=01&lesion_id=3&plane=axial&modality=flair"
    with_c = _png(client.get(base, headers=AUTH))
    without = _png(client.get(base + "&contour=0", headers=AUTH))
    yellow = (with_c == [255, 210, 0]).all(axis=2)
    assert with_c.shape == (320, 320, 3) and yellow.sum() > 50 and not (without == [255, 210, 0]).all(axis=2).any()
    assert yellow[160].any() and yellow[:, 160].any()  # the outline surrounds the centred lesion
    narrow = _png(client.get(base + "&contour=0&vmin=0.6&vmax=0.7", headers=AUTH))
    assert (narrow != without).any()
    for plane in ("coronal", "sagittal"):
        lim = client.get("/api/lesion?subject=01&lesion_id=3", headers=AUTH).json()["max_offset"][plane]
        assert _png(client.get(f"/api/view?subject=01&lesion_id=3&plane={plane}&offset={lim}",
                               headers=AUTH)).shape == (320, 320, 3)


def test_lesions_are_ordered_by_probability_or_uncertainty(client):
    probs = [p for v in PROBS.values() for p in v]
    got = client.get("/api/lesions?order=probability", headers=AUTH).json()["lesions"]
    assert [x["probability"] for x in got] == sorted(probs, reverse=True)
    got = client.get("/api/lesions?order=uncertainty", headers=AUTH).json()["lesions"]
    assert [x["probability"] for x in got] == sorted(probs, key=lambda p: round(abs(p - 0.5), 9))
    # 0.30 and 0.70 are equally uncertain (despite float rounding): ties go by subject, lesion id
    tied = [(x["subject"], x["lesion_id"]) for x in got if x["probability"] in (0.3, 0.7)]
    assert tied == [("02", 1), ("02", 2)]
    assert client.get("/api/lesions?order=random", headers=AUTH).status_code == 400


def test_ratings_export_and_agreement(cohort, tmp_path):
    client = _app(cohort, tmp_path)
    from rimscope.cohort import check_labels, read_labels

    def rate(sid, lid, rating, rater, conf=1.0):
        r = client.post("/api/rate", json={"subject": sid, "lesion_id": lid, "rating": rating,
                                           "rater": rater, "confidence": conf}, headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()

    # alice: 01/1 rim+, 01/2 rim- then changed to rim+, 01/3 unsure; bob: 01/1 rim+, 01/2 rim-
    rate("01", 1, "rim+", "alice")
    rate("01", 2, "rim-", "alice")
    row = rate("01", 2, "rim+", "alice", 0.33)
    assert row["ts"].endswith("Z") and row["rating"] == "rim+"
    rate("01", 3, "unsure", "alice", None)
    rate("01", 1, "rim+", "bob")
    rate("01", 2, "rim-", "bob")
    assert client.store.count() == 6
    mine = {(x["subject"], x["lesion_id"]): x["rating"]
            for x in client.get("/api/lesions?rater=alice", headers=AUTH).json()["lesions"]}
    assert mine[("01", 2)] == "rim+" and mine[("01", 3)] == "unsure" and mine[("02", 1)] is None

    tsv = client.get("/api/export", headers=AUTH).text
    lines = [ln.split("\t") for ln in tsv.strip().split("\n")]
    assert lines[0] == ["subject", "lesion_id", "rim", "rater", "confidence"]
    assert sorted(lines[1:]) == [["01", "1", "1", "alice", "1"], ["01", "1", "1", "bob", "1"],
                                 ["01", "2", "0", "bob", "1"], ["01", "2", "1", "alice", "0.33"]]
    path = client.store.path.parent / "labels.tsv"
    path.write_text(tsv)
    labels = read_labels(path)  # the input contract's reader takes the export as it is
    check_labels(labels, {"01": {1, 2, 3, 4}, "02": {1, 2, 3}})
    assert labels[("01", 1)] == 1

    pairs = {(p["a"], p["b"]): p for p in client.get("/api/agreement", headers=AUTH).json()["pairs"]}
    ab = pairs[("alice", "bob")]
    assert ab["n"] == 2 and ab["agreement"] == 0.5 and ab["kappa"] == pytest.approx(0.0)
    # alice vs model on 01/1 (model 1) and 01/2 (model 0): alice 1, 1 -> kappa 0 by hand
    am = pairs[("alice", "model")]
    assert am["n"] == 2 and am["agreement"] == 0.5 and am["kappa"] == pytest.approx(0.0)
    bm = pairs[("bob", "model")]  # bob 1, 0 equals the model 1, 0: perfect agreement
    assert bm["n"] == 2 and bm["kappa"] == pytest.approx(1.0)


def test_kappa_matches_a_hand_computed_value():
    from rimscope.review.results import kappa

    a = [1, 1, 0, 0, 1, 0, 0, 0]
    b = [1, 0, 0, 0, 1, 0, 1, 0]
    po = 6 / 8
    pe = (3 / 8) * (3 / 8) + (5 / 8) * (5 / 8)
    assert kappa(a, b) == pytest.approx((po - pe) / (1 - pe))
    assert kappa([], []) is None and kappa([1, 1], [1, 1]) is None


def test_views_are_radiological_and_square_in_mm():
    from rimscope.review.views import sample_plane

    vol = np.zeros((20, 20, 20), np.float32)
    vol[15, 10, 10] = 1  # right of the centre (RAS: higher x = patient's right)
    vol[10, 15, 10] = 2  # anterior
    vol[10, 10, 15] = 3  # superior
    c, z = (10, 10, 10), np.array([1.0, 1.0, 2.0])
    ax, _ = sample_plane(vol, c, z, "axial", 0)
    r, cc = np.nonzero(ax == 1)
    assert cc.mean() < 160  # right shows on the image's left
    r, cc = np.nonzero(ax == 2)
    assert r.mean() < 160  # anterior at the top
    cor, _ = sample_plane(vol, c, z, "coronal", 0)
    r, cc = np.nonzero(cor == 3)
    assert r.mean() < 160 and len(set(r)) == 16  # superior on top; a 2 mm voxel spans 16 rows
    sag, inside = sample_plane(vol, c, z, "sagittal", 5)  # 5 voxels to the right: x = 15
    assert (sag == 1).any() and not inside.all()


def _app(cohort, tmp_path, **kw):
    from rimscope.review.app import create_app
    from rimscope.review.catalog import Catalog
    from rimscope.review.store import RatingStore

    store = RatingStore(tmp_path / "r.sqlite")
    c = TestClient(create_app(Catalog(cohort["manifest"], cohort["predictions"]), store, TOKEN, "alice", **kw),
                   base_url="http://127.0.0.1:8765")  # the Host a local browser sends
    c.store = store
    return c


def test_blind_review_hides_the_model_and_other_raters(cohort, tmp_path):
    c = _app(cohort, tmp_path, blind=True)
    c.store.add("bob", "01", 1, 1, 1.0)
    assert c.get("/api/meta", headers=AUTH).json()["blind"] is True
    listing = c.get("/api/lesions", headers=AUTH).json()
    assert listing["order"] == "subject"
    assert all("probability" not in x and "rim" not in x for x in listing["lesions"])
    one = c.get("/api/lesion?subject=01&lesion_id=1", headers=AUTH).json()
    assert "probability" not in one and one["ratings"] == []
    assert c.get("/api/agreement", headers=AUTH).status_code == 403
    r = c.post("/api/rate", json={"subject": "01", "lesion_id": 1, "rating": "rim-"}, headers=AUTH)
    assert r.status_code == 200 and c.store.count() == 2
    seen = _app(cohort, tmp_path / "x").get("/api/lesion?subject=01&lesion_id=1", headers=AUTH).json()
    assert "probability" in seen  # not blind: shown


def test_a_predicted_lesion_absent_from_the_mask_is_refused(tmp_path):
    cohort = make_review_cohort(tmp_path / "c")
    tsv = lesions_tsv(cohort["predictions"], "01")
    tsv.write_text(tsv.read_text() + "9\t10\t10\t1\t1\t1\t0.5\t1\t\n")
    c = _app(cohort, tmp_path)
    assert c.get("/api/lesion?subject=01&lesion_id=9", headers=AUTH).status_code == 404
    r = c.post("/api/rate", json={"subject": "01", "lesion_id": 9, "rating": "rim+"}, headers=AUTH)
    assert r.status_code == 404 and c.store.count() == 0


@pytest.mark.parametrize("row, message", [
    ("7\t10\t10\t1\t1\t1\t1.5\t1\t", r"rim_probability must lie in \[0, 1\]"),
    ("7\t10\t10\t1\t1\t1\t0.5\t2\t", "rim be 0 or 1"),
    ("x\t10\t10\t1\t1\t1\t0.5\t1\t", "must be numbers"),
    ("1\t10\t10\t1\t1\t1\t0.5\t1\t", "unique"),  # lesion 1 twice
])
def test_broken_predictions_tables_are_refused_in_one_line(tmp_path, row, message):
    from rimscope.errors import InputError
    from rimscope.review.catalog import Catalog

    cohort = make_review_cohort(tmp_path / "c")
    tsv = lesions_tsv(cohort["predictions"], "02")
    tsv.write_text(tsv.read_text() + row + "\n")
    with pytest.raises(InputError, match=message) as err:
        Catalog(cohort["manifest"], cohort["predictions"])
    assert "sub-02_lesions.tsv" in str(err.value) and "\n" not in str(err.value)
