"""The review server's guard: the start-up token, the Host and Origin checks and the security
headers on every response (ASGI middleware), and a nesting check of JSON bodies before parsing.

Why: any local process or web page could otherwise reach a 127.0.0.1 port. As Jupyter does, every
request needs the token (query `?token=`, an `Authorization: Bearer` header, or the HttpOnly
cookie set on the first visit), the `Host` header must name this machine (or the --host given),
which stops DNS rebinding, and a write must come from the page's own origin.
"""
from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.responses import PlainTextResponse, RedirectResponse

MAX_JSON_DEPTH = 4  # a rating is one flat object; deeper bodies are refused before parsing
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"),
]


def cookie_name(scope) -> str:
    """Cookies ignore ports: name the cookie by port so two servers on one host do not clash."""
    server = scope.get("server") or ("", 0)
    return f"rimscope_token_{server[1] or 0}"


def host_name(value: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1' (lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(bind: str):
    """Host names the page may be reached by: this machine's, plus the --host given; None (any)
    when bound to every interface (the token still guards every request)."""
    if bind in ("0.0.0.0", "::", ""):
        return None
    return LOCAL_HOSTS | {host_name(bind)}


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Is the nesting of [ and { (outside strings) at most `limit`? Parsing a 2,000-deep body
    would hit Python's recursion limit; this scan never does."""
    depth, in_str, esc = 0, False, False
    for ch in body.decode("utf-8", "replace"):
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


class TokenGuard:
    """ASGI middleware: refuse a foreign Host (403), a cross-origin write (403) and any request
    that does not carry the token (401)."""

    def __init__(self, app, token: str, hosts=LOCAL_HOSTS):
        self.app, self.token, self.hosts = app, token.encode(), hosts

    def _foreign(self, scope) -> str | None:
        """Why the request is refused before the token is looked at, or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return "403: this review answers only requests addressed to its own host"
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if origin.strip().lower() != f"{scope.get('scheme', 'http')}://{host.strip().lower()}":
                return "403: ratings are accepted only from the review page itself"
        return None

    def _presented(self, scope) -> tuple[str | None, bool]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is simply no token
            return None, False
        morsel = jar.get(cookie_name(scope))
        return (morsel.value if morsel else None), False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        foreign = self._foreign(scope)
        if foreign:
            resp = PlainTextResponse(foreign, status_code=403)
            return await resp(scope, receive, self._with_headers(send))
        token, from_query = self._presented(scope)
        if token is None or not hmac.compare_digest(token.encode("utf-8", "replace"), self.token):
            resp = PlainTextResponse("401: this rimscope review needs the token printed at start "
                                     "(open the URL with ?token=...)", status_code=401)
            return await resp(scope, receive, self._with_headers(send))
        if from_query and scope["method"] == "GET" and scope["path"] == "/":
            # first visit: keep the token in an HttpOnly cookie and drop it from the address bar
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(cookie_name(scope), self.token.decode(), httponly=True, samesite="strict",
                            path="/")
            return await resp(scope, receive, self._with_headers(send))
        return await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)
        return wrapped
