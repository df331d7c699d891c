"""The review web app: a token-guarded Starlette API over one catalog and one rating store.

Why this shape: the server holds the volumes and the database; the page only asks for lesions by
id, PNG views and rating writes. Every request needs the start-up token (query `?token=`, an
`Authorization: Bearer` header, or the HttpOnly cookie set on the first visit), as Jupyter does,
because any local process or web page could otherwise reach a 127.0.0.1 port. As defence in depth
(again as Jupyter does) the `Host` header must name this machine (or the --host given), which stops
DNS rebinding, and a write must come from the page's own origin. Static files come from a fixed
table, never from a client-supplied path. The guard itself is review.guard.
"""
from __future__ import annotations

import json
import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import params as P
from .guard import LOCAL_HOSTS, TokenGuard, json_depth_ok
from .results import MODEL, agreement, labels_tsv
from .store import NAMES, RATINGS
from .views import PLANES, max_offset, render

log = logging.getLogger("rimscope")

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
ORDERS = ("uncertainty", "probability", "subject")
MODALITIES = ("qsm", "flair")
# default display windows: QSM in ppm, FLAIR normalised (brain median 0, robust range 1)
WINDOWS = {"qsm": (-0.1, 0.1), "flair": (-0.6, 1.2)}  # +-100 ppb: rims are +20..80 ppb
WINDOW_LIMIT = 100.0
MAX_BODY = 4096
def _static(name: str) -> bytes:
    return resources.files("rimscope.review").joinpath("static", name).read_bytes()


def create_app(catalog, store, token: str, default_rater: str = "rater", blind: bool = False,
               hosts=LOCAL_HOSTS) -> Starlette:
    """The app; `catalog` (ids, volumes) and `store` (ratings) are the only state.

    `hosts`: the Host names accepted (allowed_hosts(--host)); None accepts any.

    `blind` hides the model's probability and call, other raters' ratings and the agreement table,
    so that ratings meant to measure agreement are independent of them.
    """

    async def index(request: Request):
        P.only(request.query_params, set())
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    async def static(request: Request):
        P.only(request.query_params, set())
        name = request.path_params["name"]
        if name not in STATIC:  # a fixed table: the client's string never reaches the filesystem
            P.bad("not found", 404)
        return Response(_static(name), media_type=STATIC[name])

    async def meta(request: Request):
        P.only(request.query_params, set())
        return JSONResponse({"default_rater": default_rater, "orders": list(ORDERS),
                             "planes": list(PLANES), "modalities": list(MODALITIES),
                             "windows": WINDOWS, "window_limit": WINDOW_LIMIT,
                             "ratings": list(RATINGS), "n_lesions": len(catalog.all()), "blind": blind,
                             "subjects": sorted(catalog.lesions)})

    def lesions(request: Request):
        q = request.query_params
        P.only(q, {"order", "rater"})
        order = P.as_choice(q.get("order", "subject" if blind else "uncertainty"), "order", ORDERS)
        rater = P.as_rater(q.get("rater", default_rater))
        mine = {(r["subject"], r["lesion_id"]): r for r in store.latest() if r["rater"] == rater}
        out = []
        for p in catalog.ordered(order):
            r = mine.get((p.subject, p.lesion_id))
            item = {"subject": p.subject, "lesion_id": p.lesion_id, "probability": p.probability,
                    "rim": p.rim, "volume_mm3": _num(p.volume_mm3), "flags": p.flags,
                    "rating": NAMES[r["rating"]] if r else None,
                    "confidence": r["confidence"] if r else None}
            out.append(_blinded(item) if blind else item)
        return JSONResponse({"order": order, "rater": rater, "lesions": out})

    def lesion(request: Request):
        q = request.query_params
        P.only(q, {"subject", "lesion_id"})
        sid = P.as_subject(q.get("subject"), catalog)
        pred = P.as_lesion(sid, q.get("lesion_id"), catalog)
        vol = _volumes(sid, pred.lesion_id)
        ratings = [{"rater": r["rater"], "rating": NAMES[r["rating"]], "confidence": r["confidence"],
                    "ts": r["ts"]} for r in store.latest()
                   if r["subject"] == sid and r["lesion_id"] == pred.lesion_id]
        item = {"subject": sid, "lesion_id": pred.lesion_id, "probability": pred.probability,
                "rim": pred.rim, "volume_mm3": _num(pred.volume_mm3), "flags": pred.flags,
                "max_offset": {pl: max_offset(vol.zooms, pl) for pl in PLANES},
                "zooms_mm": [round(float(z), 4) for z in vol.zooms], "ratings": ratings}
        return JSONResponse(_blinded(item) if blind else item)

    def view(request: Request):
        q = request.query_params
        P.only(q, {"subject", "lesion_id", "modality", "plane", "offset", "vmin", "vmax", "contour"})
        sid = P.as_subject(q.get("subject"), catalog)
        pred = P.as_lesion(sid, q.get("lesion_id"), catalog)
        modality = P.as_choice(q.get("modality", "qsm"), "modality", MODALITIES)
        plane = P.as_choice(q.get("plane", "axial"), "plane", tuple(PLANES))
        lo, hi = WINDOWS[modality]
        vmin = P.as_float(q.get("vmin", str(lo)), "vmin", -WINDOW_LIMIT, WINDOW_LIMIT)
        vmax = P.as_float(q.get("vmax", str(hi)), "vmax", -WINDOW_LIMIT, WINDOW_LIMIT)
        if not vmin < vmax:
            P.bad("vmin must be below vmax")
        contour = P.as_choice(q.get("contour", "1"), "contour", ("0", "1")) == "1"
        vol = _volumes(sid, pred.lesion_id)
        lim = max_offset(vol.zooms, plane)
        offset = P.as_int(q.get("offset", "0"), "offset", -lim, lim)
        image = vol.qsm if modality == "qsm" else vol.flair
        png = render(image, vol.lesions, pred.lesion_id, vol.centroids[pred.lesion_id], vol.zooms,
                     plane, offset, vmin, vmax, contour)
        return Response(png, media_type="image/png")

    async def rate(request: Request):
        P.only(request.query_params, set())
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            P.bad("send the rating as application/json", 415)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            P.bad("request body too large", 413)
        body = await request.body()
        if len(body) > MAX_BODY:
            P.bad("request body too large", 413)
        if not json_depth_ok(body):
            P.bad("body is nested too deeply; send one flat JSON object")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            P.bad("body is not valid JSON")
        if not isinstance(data, dict):
            P.bad("body must be a JSON object")
        extra = set(data) - {"subject", "lesion_id", "rating", "rater", "confidence"}
        if extra:
            P.bad("unknown field(s) in body")
        sid = P.as_subject(data.get("subject"), catalog)
        pred = P.as_lesion(sid, data.get("lesion_id"), catalog, json=True)
        rating = RATINGS[P.as_choice(data.get("rating"), "rating", tuple(RATINGS))]
        rater = P.as_rater(data.get("rater", default_rater))
        conf = data.get("confidence")
        conf = None if conf is None else P.as_float(conf, "confidence", 0.0, 1.0)
        # a label must name a lesion of the mask (check_labels refuses it otherwise)
        await run_in_threadpool(_volumes, sid, pred.lesion_id)
        row = await run_in_threadpool(store.add, rater, sid, pred.lesion_id, rating, conf)
        return JSONResponse(row)

    def agree(request: Request):
        P.only(request.query_params, set())
        if blind:
            P.bad("agreement is hidden in a blind review; export the labels or restart without --blind", 403)
        model = {(p.subject, p.lesion_id): p.rim for p in catalog.all()}
        latest = store.latest()
        return JSONResponse({"pairs": agreement(latest, model), "model": MODEL,
                             "raters": sorted({r["rater"] for r in latest}),
                             "n_ratings": len(latest)})

    def export(request: Request):
        P.only(request.query_params, set())
        return Response(labels_tsv(store.latest()), media_type="text/tab-separated-values; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="labels.tsv"'})

    def _volumes(sid, lid):
        try:
            vol = catalog.volumes(sid)
        except Exception as exc:  # a broken image on disk: say so once, do not crash the server
            log.warning("sub-%s: cannot load volumes: %s", sid, exc)
            raise HTTPException(500, detail=f"cannot load the images of sub-{sid}: {exc}") from None
        if lid not in vol.centroids:
            P.bad("this lesion id is not in the subject's lesion mask", 404)
        return vol

    async def on_http_error(request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    routes = [Route("/", index), Route("/static/{name}", static), Route("/api/meta", meta),
              Route("/api/lesions", lesions), Route("/api/lesion", lesion), Route("/api/view", view),
              Route("/api/rate", rate, methods=["POST"]), Route("/api/agreement", agree),
              Route("/api/export", export)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: on_http_error})
    app.add_middleware(TokenGuard, token=token, hosts=hosts)
    return app


def _blinded(item: dict) -> dict:
    """Without what could sway a rater: the model's output and other raters' calls."""
    out = {k: v for k, v in item.items() if k not in ("probability", "rim")}
    if "ratings" in out:
        out["ratings"] = []
    return out


def _num(x):
    import math

    return float(x) if x is not None and math.isfinite(x) else None
