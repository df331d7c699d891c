"""`rimscope review`: serve the review page, or export the ratings as a labels TSV.

Why a token and 127.0.0.1: the page can write ratings and read images of patients; a local port is
reachable by every process and every web page of the machine, so (as Jupyter does) a random token
printed at start is required on every request, and binding elsewhere is the user's explicit choice.
"""
from __future__ import annotations

import getpass
import ipaddress
import logging
import secrets
import socket
from pathlib import Path

from ..errors import InputError
from ..flags import add_input

log = logging.getLogger("rimscope")
DB_NAME = "review.sqlite"


def add_arguments(p) -> None:
    add_input(p, "manifest (CSV/TSV) or BIDS folder of the reviewed subjects", dest="cohort")
    p.add_argument("--predictions", help="OUT folder of rimscope predict (sub-<id>/[ses-<s>/]anat/*_lesions.tsv)")
    p.add_argument("--rater", default=None, help="rater name stored with each rating (default: your "
                   "login name; the page can change it)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this "
                   "machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--db", default=None, help=f"SQLite file of ratings (default PREDICTIONS/{DB_NAME})")
    p.add_argument("--blind", action="store_true", help="hide the model's probability, other raters' "
                   "ratings and the agreement table (for independent ratings)")
    p.add_argument("--export", metavar="FILE", default=None, help="write the current ratings as a "
                   "labels TSV (subject, lesion_id, rim, rater, confidence) and exit")


def _db_path(args) -> Path:
    if args.db:
        return Path(args.db)
    if not args.predictions:
        raise InputError("give --predictions (the ratings live in PREDICTIONS/review.sqlite) or --db")
    return Path(args.predictions) / DB_NAME


def _rater(name: str | None) -> str:
    from .params import RATER_RE, RESERVED_RATERS

    if name is None:
        try:
            name = getpass.getuser()
        except Exception:
            name = "rater"
        name = "".join(c for c in name if c.isalnum() or c in "_.@-")[:40] or "rater"
    if not RATER_RE.match(name) or name.lower() in RESERVED_RATERS:
        raise InputError(f"--rater {name!r}: use 1-40 letters, digits or _ . @ - (not 'model')")
    return name


def _check_port(host: str, port: int) -> None:
    """Fail now, in one line, rather than in uvicorn's log after the token was printed."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port} is not in 1..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                             "--port") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from .store import RatingStore

    if args.export:
        db = _db_path(args)
        if not db.exists():
            raise InputError("no ratings database here; give --db or the --predictions folder the "
                             "review ran on", db)
        from .results import write_labels

        n = write_labels(RatingStore(db).latest(), args.export)
        print(f"rimscope review: wrote {n} label(s) to {args.export}")
        return 0
    if not args.cohort or not args.predictions:
        raise InputError("rimscope review needs -i COHORT and --predictions OUT (or --export FILE)")
    rater = _rater(args.rater)
    from .catalog import Catalog

    catalog = Catalog(args.cohort, args.predictions)
    store = RatingStore(_db_path(args))
    _check_port(args.host, args.port)
    if not _is_loopback(args.host):
        log.warning("--host %s: the review is reachable from other machines (token still required, "
                    "traffic is not encrypted)", args.host)
    token = secrets.token_urlsafe(32)
    from .app import create_app
    from .guard import allowed_hosts

    app = create_app(catalog, store, token, default_rater=rater, blind=args.blind,
                     hosts=allowed_hosts(args.host))
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    print(f"rimscope review: {len(catalog.all())} lesions of {len(catalog.lesions)} subject(s); "
          f"ratings in {store.path}", flush=True)
    print(f"rimscope review: open http://{shown}:{args.port}/?token={token}", flush=True)
    print("rimscope review: keys 1 Rim+, 0 Rim-, u unsure, arrows move; Ctrl-C stops", flush=True)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0

