"""Helpers for the review tests (no tests here): a tiny cohort with a predictions folder, and a
real `rimscope review` server in a subprocess (what a user runs, so kill -9 means something)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np

from conftest import write_manifest, write_tiny_subject

PROBS = {"01": [0.92, 0.08, 0.55, 0.47], "02": [0.30, 0.70, 0.51]}


def make_review_cohort(root: Path) -> dict:
    """Two subjects (4 and 3 lesions) + OUT/sub-<id>/sub-<id>_lesions.tsv per the output contract."""
    from rimscope.inference.outputs import LESION_COLUMNS, lesions_tsv
    from rimscope.lesions import lesion_table
    from rimscope.runtime import write_tsv_atomic

    root = Path(root)
    out = root / "pred"
    subjects = {}
    for k, (sid, probs) in enumerate(PROBS.items()):
        aff = np.diag([1.0, 1.0, 1.2, 1.0])
        subjects[sid] = write_tiny_subject(root / f"sub-{sid}", sid, seed=k, n_lesions=len(probs), affine=aff,
                                           prefix=f"sub-{sid}")
        labels = np.asanyarray(nib.load(str(subjects[sid]["lesions"])).dataobj)
        rows = []
        for les, p in zip(lesion_table(labels, aff), probs):
            x, y, z = les.centroid_mm
            rows.append({"lesion_id": les.id, "n_voxels": les.n_voxels, "volume_mm3": les.volume_mm3,
                         "x_mm": float(x), "y_mm": float(y), "z_mm": float(z), "rim_probability": p,
                         "rim": int(p >= 0.5), "flags": ",".join(les.flags)})
        write_tsv_atomic(lesions_tsv(out, sid), rows, LESION_COLUMNS)
    write_manifest(root, subjects)
    return {"manifest": root / "manifest.tsv", "predictions": out, "db": out / "review.sqlite"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`rimscope review` in a subprocess; `url` carries the token read from its stdout."""

    def __init__(self, cohort: dict, rater: str = "alice", timeout: float = 60.0):
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rimscope", "review", "-i", str(cohort["manifest"]),
             "--predictions", str(cohort["predictions"]), "--rater", rater, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.url = None
        deadline = time.monotonic() + timeout
        while self.url is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
            if "?token=" in line:
                self.url = line.strip().split("open ", 1)[1]
            if time.monotonic() > deadline:
                raise RuntimeError("server did not print its URL")
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = self.url.split("?token=", 1)[1]
        while True:  # the URL is printed just before uvicorn binds: wait until it answers
            try:
                self.get("/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("server never answered")
                time.sleep(0.05)

    def request(self, path, data=None):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        if data is not None:
            req.data = json.dumps(data).encode()
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read()

    def get(self, path):
        return self.request(path)[1]

    def rate(self, subject, lesion_id, rating, rater, confidence=1.0):
        status, body = self.request("/api/rate", {"subject": subject, "lesion_id": lesion_id,
                                                  "rating": rating, "rater": rater,
                                                  "confidence": confidence})
        assert status == 200
        return json.loads(body)

    def kill9(self):
        self.proc.kill()  # SIGKILL: no shutdown handler, no flush, nothing
        self.proc.wait(10)
        self.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.close()

    def close(self):
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
