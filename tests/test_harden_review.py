"""Review server hardening: deeply nested JSON is a 400 (no traceback logged), Host must name this
machine (DNS rebinding), writes must come from the page's own origin."""
from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("starlette")

from test_review_api import AUTH, _app  # noqa: E402
from test_review_support import make_review_cohort  # noqa: E402

JSON = {**AUTH, "Content-Type": "application/json"}
OK = {"subject": "01", "lesion_id": 1, "rating": "rim+", "rater": "alice"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_review_cohort(tmp_path_factory.mktemp("review"))


@pytest.mark.parametrize("body", [b"[" * 2000 + b"]" * 2000, b'{"a":' * 600 + b"1" + b"}" * 600,
                                  b'{"subject": "' + b"[" * 2000 + b'"}'])
def test_deeply_nested_json_is_a_400_without_traceback(cohort, tmp_path, caplog, body):
    c = _app(cohort, tmp_path)
    with caplog.at_level(logging.DEBUG):
        r = c.post("/api/rate", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert c.store.count() == 0


@pytest.mark.parametrize("host,status", [("127.0.0.1:8765", 200), ("localhost:8765", 200),
                                         ("[::1]:8765", 200), ("LOCALHOST", 200),
                                         ("evil.example:8765", 403), ("127.0.0.1.evil.example", 403),
                                         ("", 403)])
def test_host_must_name_this_machine(cohort, tmp_path, host, status):
    c = _app(cohort, tmp_path)
    r = c.get("/api/meta", headers={**AUTH, "Host": host})
    assert r.status_code == status, (host, r.text)


def test_the_host_given_with_host_is_accepted_and_a_wildcard_bind_accepts_any(cohort, tmp_path):
    from rimscope.review.guard import allowed_hosts

    c = _app(cohort, tmp_path, hosts=allowed_hosts("10.1.2.3"))
    assert c.get("/api/meta", headers={**AUTH, "Host": "10.1.2.3:8765"}).status_code == 200
    assert c.get("/api/meta", headers={**AUTH, "Host": "10.9.9.9:8765"}).status_code == 403
    c = _app(cohort, tmp_path, hosts=allowed_hosts("0.0.0.0"))
    assert c.get("/api/meta", headers={**AUTH, "Host": "myworkstation:8765"}).status_code == 200
    assert c.get("/api/meta", headers={"Host": "myworkstation:8765"}).status_code == 401


@pytest.mark.parametrize("origin,status", [(None, 200), ("http://127.0.0.1:8765", 200),
                                           ("http://evil.example", 403), ("null", 403),
                                           ("http://127.0.0.1:9999", 403)])
def test_writes_only_from_the_same_origin(cohort, tmp_path, origin, status):
    c = _app(cohort, tmp_path)
    headers = {**JSON, **({"Origin": origin} if origin else {})}
    r = c.post("/api/rate", content=json.dumps(OK), headers=headers)
    assert r.status_code == status, (origin, r.text)
    assert c.store.count() == (1 if status == 200 else 0)


def test_reads_are_not_origin_checked(cohort, tmp_path):
    c = _app(cohort, tmp_path)  # an <img> of another page sends no token: 401 comes from the token
    assert c.get("/api/meta", headers={**AUTH, "Origin": "http://evil.example"}).status_code == 200
