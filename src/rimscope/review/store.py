"""Ratings in SQLite: every rating is one committed row the moment it is made.

Why SQLite in WAL mode: a rater's hour must survive a crashed or killed server, and two raters
(or two `rimscope review` processes on one shared db file) must be able to write at the same
time. WAL lets readers and one writer proceed together; `busy_timeout` makes a second writer
wait instead of failing; `synchronous=FULL` makes each commit durable before the API answers.
Rows are append-only (a changed mind is a new row), so the history of a rating is kept and the
export takes the latest row per (rater, subject, lesion).
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

RATINGS = {"rim+": 1, "rim-": 0, "unsure": -1}
NAMES = {v: k for k, v in RATINGS.items()}

SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    subject TEXT NOT NULL,
    lesion_id INTEGER NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 0, 1)),
    confidence REAL CHECK (confidence IS NULL OR (confidence >= 0 AND confidence <= 1)),
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_key ON ratings (rater, subject, lesion_id, id);
"""

LATEST = """
SELECT r.rater, r.subject, r.lesion_id, r.rating, r.confidence, r.ts FROM ratings r
JOIN (SELECT MAX(id) AS id FROM ratings GROUP BY rater, subject, lesion_id) m ON r.id = m.id
ORDER BY r.subject, r.lesion_id, r.rater
"""


def utc_now() -> str:
    """ISO 8601 UTC with milliseconds: sortable and unambiguous across raters' time zones."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class RatingStore:
    """One SQLite file; a short-lived connection per operation so threads never share one."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # serialises writers of this process; others wait on busy_timeout
        with self._connect() as con:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode})")
            con.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self):
        con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")
            yield con
        finally:
            con.close()

    def add(self, rater: str, subject: str, lesion_id: int, rating: int,
            confidence: float | None = None) -> dict:
        """Insert one rating and commit it before returning (the caller answers only after this)."""
        if rating not in NAMES:
            raise ValueError(f"rating must be one of {sorted(NAMES)}")
        ts = utc_now()
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute("INSERT INTO ratings (rater, subject, lesion_id, rating, confidence, ts) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (rater, subject, int(lesion_id), int(rating), confidence, ts))
            con.execute("COMMIT")
            row_id = cur.lastrowid
        return {"id": row_id, "rater": rater, "subject": subject, "lesion_id": int(lesion_id),
                "rating": NAMES[rating], "confidence": confidence, "ts": ts}

    def latest(self) -> list[dict]:
        """The current rating of every (rater, subject, lesion): the last one made."""
        with self._connect() as con:
            rows = con.execute(LATEST).fetchall()
        return [{"rater": r[0], "subject": r[1], "lesion_id": int(r[2]), "rating": int(r[3]),
                 "confidence": r[4], "ts": r[5]} for r in rows]

    def count(self) -> int:
        """Every row ever committed (history included)."""
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0])

    def raters(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT rater FROM ratings ORDER BY rater")]
