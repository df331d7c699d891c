"""Durability and concurrency of ratings: two raters at once, a real server killed with SIGKILL,
two store handles on one file, and `rimscope review --export`."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

pytest.importorskip("uvicorn")

from test_review_support import PROBS, Server, make_review_cohort  # noqa: E402

LESIONS = [(sid, i + 1) for sid, probs in PROBS.items() for i in range(len(probs))]


@pytest.fixture
def cohort(tmp_path):
    return make_review_cohort(tmp_path)


def _db_rows(db):
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT id, rater, subject, lesion_id, rating FROM ratings ORDER BY id").fetchall()
    finally:
        con.close()


def _run_raters(server, passes, stop=None):
    """Alice and Bob rate every lesion `passes` times at once (until `stop` is set, if given);
    returns {rater: [(row id, subject, lesion, rating)]} of the ratings the server answered."""
    answered = {"alice": [], "bob": []}
    failures = {"alice": [], "bob": []}

    def rater(name):
        try:
            for rep in range(passes):
                for sid, lid in LESIONS:
                    rating = ("rim+", "rim-")[(rep + lid + (name == "bob")) % 2]
                    row = server.rate(sid, lid, rating, name)
                    answered[name].append((row["id"], sid, lid, row["rating"]))
                    if stop is not None and stop.is_set():
                        return
        except Exception as exc:
            failures[name].append(exc)

    threads = [threading.Thread(target=rater, args=(n,)) for n in answered]
    for t in threads:
        t.start()
    return answered, failures, threads


@pytest.mark.slow  # a real server in a subprocess
def test_two_raters_at_once_lose_no_rating(cohort):
    """Two raters post every lesion three times, concurrently, to a real uvicorn server."""
    server = Server(cohort)
    try:
        answered, failures, threads = _run_raters(server, 3)
        for t in threads:
            t.join(120)
        tsv = server.get("/api/export").decode()
    finally:
        server.stop()
    assert failures == {"alice": [], "bob": []}
    n = 3 * len(LESIONS)
    assert len(answered["alice"]) == len(answered["bob"]) == n
    ids = {a[0] for rows in answered.values() for a in rows}
    assert len(ids) == 2 * n and {r[0] for r in _db_rows(cohort["db"])} == ids
    got = sorted(tuple(ln.split("\t")[:4]) for ln in tsv.strip().split("\n")[1:])
    last = {(sid, lid, name): rating for name, rows in answered.items() for _, sid, lid, rating in rows}
    want = sorted((sid, str(lid), "1" if rating == "rim+" else "0", name)
                  for (sid, lid, name), rating in last.items())
    assert got == want


@pytest.mark.slow  # a real server in a subprocess
def test_server_killed_mid_session_loses_no_committed_rating(cohort):
    """SIGKILL the server while two raters are still posting: every rating it answered is kept."""
    server = Server(cohort)
    stop = threading.Event()
    try:
        answered, failures, threads = _run_raters(server, 1000, stop)
        while len(answered["alice"]) < 10 or len(answered["bob"]) < 10:
            assert all(t.is_alive() for t in threads), failures
            time.sleep(0.01)
        server.kill9()  # mid-session: both raters are still posting
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        server.stop()
    assert failures["alice"] and failures["bob"], "the kill did not interrupt the raters"
    db_ids = {r[0] for r in _db_rows(cohort["db"])}
    answered_ids = {a[0] for rows in answered.values() for a in rows}
    assert answered_ids <= db_ids  # nothing answered was lost
    assert len(db_ids - answered_ids) <= 2  # at most the requests in flight at the kill
    # a fresh server on the same database serves them
    server = Server(cohort, rater="carol")
    try:
        rows = json.loads(server.get("/api/agreement"))
    finally:
        server.stop()
    assert rows["n_ratings"] == len({r[1:4] for r in _db_rows(cohort["db"])})


def test_two_store_handles_on_one_file_lose_nothing(tmp_path):
    """Two `rimscope review` processes may share one db: writers wait for each other (WAL)."""
    from rimscope.review.store import RatingStore

    db = tmp_path / "shared.sqlite"
    stores = [RatingStore(db), RatingStore(db)]
    assert sqlite3.connect(str(db)).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def write(store, name):
        for i in range(60):
            store.add(name, "01", 1 + i % 4, i % 2, 0.5)

    threads = [threading.Thread(target=write, args=(s, n)) for s, n in zip(stores, ("a", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert stores[0].count() == 120
    latest = stores[1].latest()
    assert len(latest) == 8 and {r["rater"] for r in latest} == {"a", "b"}
    # the latest row per lesion wins: i = 56..59 are the last ones for lesions 1..4
    assert {(r["rater"], r["lesion_id"]): r["rating"] for r in latest}[("a", 1)] == 56 % 2


def test_export_command_writes_the_labels_tsv(cohort, tmp_path, capsys):
    from rimscope.cli import main
    from rimscope.cohort import read_labels
    from rimscope.review.store import RatingStore

    out = tmp_path / "labels.tsv"
    assert main(["review", "--predictions", str(cohort["predictions"]), "--export", str(out)]) == 2
    assert "no ratings database" in capsys.readouterr().err
    store = RatingStore(cohort["db"])
    store.add("alice", "01", 2, 1, 1.0)
    store.add("alice", "02", 3, -1, None)
    store.add("bob", "02", 1, 0, 0.67)
    assert main(["review", "--predictions", str(cohort["predictions"]), "--export", str(out)]) == 0
    assert out.read_text().splitlines() == ["subject\tlesion_id\trim\trater\tconfidence",
                                            "01\t2\t1\talice\t1", "02\t1\t0\tbob\t0.67"]
    assert read_labels(out) == {("01", 2): 1, ("02", 1): 0}


def test_cli_refuses_bad_arguments(cohort, capsys):
    from rimscope.cli import main

    args = ["review", "-i", str(cohort["manifest"]), "--predictions", str(cohort["predictions"])]
    assert main(args + ["--rater", "model"]) == 2
    assert main(args + ["--port", "70000"]) == 2
    assert main(["review", "-i", str(cohort["manifest"]), "--predictions",
                 str(cohort["predictions"] / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--rater" in err and "--port 70000" in err and "predictions folder not found" in err
