"""The catalog's FastAPI app: HTML pages and a JSON API over the in-memory snapshot.

Every reply comes from memory (pages are rendered once per snapshot version), carries an
ETag, and errors have one JSON shape: {"error": {"status": ..., "message": ...}}. The
catalog is read-only: it has no route that writes anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from basefactory import __version__
from basefactory.catalog import views
from basefactory.catalog.snapshot import Snapshot
from basefactory.catalog.state import Catalog
from basefactory.images.diff import diff
from basefactory.plumbing.output import human_size

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)
# Renderings kept per snapshot version; beyond it the cache starts over.
MAX_DERIVED = 4096
TEMPLATES.filters["size"] = lambda n: human_size(n) if n else "—"


def _csp() -> str:
    """The pages' Content-Security-Policy: nothing loads from anywhere, and the one inline
    script and style block (base.html, no template tags inside) run by their hashes."""
    text = (Path(__file__).parent / "templates" / "base.html").read_text()

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                        for b in blocks)
    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')};"
            " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none';"
            " frame-ancestors 'none'")


CSP = _csp()


class Headers:
    """Outermost: HEAD for every GET route (monitors use it; the GET's headers, no body),
    `X-Content-Type-Options: nosniff` on every reply, and the CSP on the catalog's pages
    (not on /docs, whose Swagger UI loads its own scripts)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        page = not scope["path"].startswith(("/api/", "/docs", "/openapi", "/redoc"))
        ended = False

        async def send_with_headers(message: Any) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-content-type-options", b"nosniff"))
                if page:
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body":
                if ended:
                    return  # the rest of a streamed body: HEAD sends none of it
                ended = True
                message = {**message, "body": b"", "more_body": False}
            await send(message)
        await self.app(scope, receive, send_with_headers)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


FAST = "fast"


class FastPath:
    """Answers a GET whose URL was already rendered for this snapshot version straight
    from memory, before routing, validation and Response objects: the same bytes and
    headers the app sent the first time. Everything else (a first request, a miss, an
    error) goes through the app. The renderings live in `catalog.derived`, which a new
    snapshot version replaces, so nothing stale is ever served."""

    def __init__(self, app: ASGIApp, catalog: Catalog) -> None:
        self.app = app
        self.catalog = catalog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            hit = self.catalog.derived.get((FAST, scope["path"], scope["query_string"]))
            if hit is not None:
                etag, headers, body = hit
                if (b"if-none-match", etag) in scope["headers"]:
                    await send({"type": "http.response.start", "status": 304,
                                "headers": [(b"etag", etag)]})
                    await send({"type": "http.response.body", "body": b""})
                    return
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(catalog: Catalog) -> FastAPI:
    app = FastAPI(title="basefactory catalog", version=__version__,
                  description="Published images and wheels, and which go together: a pair is"
                  " called compatible only where a recorded test ran that wheel in that image;"
                  " every other pair is \"not tested\".")

    @app.exception_handler(views.NotFound)
    async def _not_found(_: Request, exc: views.NotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(views.BadRequest)
    async def _bad(_: Request, exc: views.BadRequest) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}")

    def snapshot() -> Snapshot:
        if catalog.snapshot is None:
            raise StarletteHTTPException(503, f"no data yet: {catalog.error or 'first read'}")
        return catalog.snapshot

    def remember(derived: dict[Any, Any], version: int, key: Any, value: Any) -> None:
        """Keep a rendering for its snapshot version only, and a bounded number of them:
        every query string is a key (the fast path's too)."""
        if catalog.version != version:
            return
        if len(derived) >= MAX_DERIVED:
            derived.clear()
        derived[key] = value

    def cached(request: Request, key: str, make: Callable[[], bytes], media: str) -> Response:
        """One rendering per snapshot version; 304 when the client has it. `make` runs only
        on a miss, so a hit costs a dict lookup (and a miss raises NotFound before anything
        is cached)."""
        version = catalog.version
        derived = catalog.derived
        body = derived.get(key)
        if body is None:
            body = make()
            remember(derived, version, key, body)
        etag = f'W/"{version}-{hash(key) & 0xffffffff:x}"'
        # the fast path answers this URL from now on
        remember(derived, version, (FAST, request.scope["path"], request.scope["query_string"]),
                 (etag.encode(), [(b"content-type", media.encode()), (b"etag", etag.encode()),
                                  (b"cache-control", b"no-cache"),
                                  (b"content-length", str(len(body)).encode())], body))
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type=media, headers={"ETag": etag,
                                                         "Cache-Control": "no-cache"})

    def page(request: Request, key: str, template: str, **context: Callable[[], Any]) -> Response:
        def make() -> bytes:
            s = snapshot()
            values = {k: fn() for k, fn in context.items()}
            return TEMPLATES.get_template(template).render(
                s=s, error=catalog.error, version=__version__, **values).encode()
        return cached(request, key, make, "text/html; charset=utf-8")

    def api(request: Request, key: str, fn: Callable[[], Any]) -> Response:
        def make() -> bytes:
            return json.dumps({"data": fn(), "taken_at": snapshot().taken_at,
                               "stale": catalog.error}, default=str).encode()
        return cached(request, key, make, "application/json")

    # --- pages -----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def overview_page(request: Request) -> Response:
        return page(request, "page:/", "overview.html",
                    overview=lambda: views.overview(snapshot()))

    @app.get("/images/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def image_page(request: Request, name: str) -> Response:
        return page(request, f"page:/images/{name}", "image.html",
                    image=lambda: views.image(snapshot(), name))

    def comparison(name: str, a: str, b: str) -> dict[str, Any]:

        s = snapshot()
        platform = views.tag_platform(s, name, a, b)
        repo = f"{catalog.reader.factory.config.registry.namespace}/{name}"
        return diff(catalog.reader.registry, repo, name, platform, a, b)

    # registry reads on a miss: plain `def`, so FastAPI runs them in its thread pool
    @app.get("/images/{name}/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(request: Request, name: str, a: str = Query(..., max_length=200),
                     b: str = Query(..., max_length=200)) -> Response:
        return page(request, f"page:/images/{name}/compare:{a}:{b}", "compare.html",
                    name=lambda: name, d=lambda: comparison(name, a, b))

    @app.get("/platforms/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def platform_page(request: Request, name: str) -> Response:
        return page(request, f"page:/platforms/{name}", "platform.html",
                    platform=lambda: views.platform(snapshot(), name))

    # --- API -------------------------------------------------------------------------

    @app.get("/api/platforms", summary="Platforms and their fingerprints")
    async def api_platforms(request: Request) -> Response:
        return api(request, "api:platforms", lambda: views.platforms(snapshot()))

    @app.get("/api/platforms/{name}", summary="One platform: fingerprint, wheels, pip line")
    async def api_platform(request: Request, name: str) -> Response:
        return api(request, f"api:platform:{name}", lambda: views.platform(snapshot(), name))

    @app.get("/api/images", summary="Images, each with its tag per platform")
    async def api_images(request: Request) -> Response:
        return api(request, "api:images", lambda: views.images(snapshot()))

    @app.get("/api/images/{name}", summary="One image: tags, parent chain, packages, tests")
    async def api_image(request: Request, name: str) -> Response:
        return api(request, f"api:image:{name}", lambda: views.image(snapshot(), name))

    @app.get("/api/images/{name}/platforms/{platform}",
             summary="One image on one platform, with the smoke test that proved it")
    async def api_image_on(request: Request, name: str, platform: str) -> Response:
        return api(request, f"api:image:{name}:{platform}",
                   lambda: views.image_on(snapshot(), name, platform))

    @app.get("/api/images/{name}/platforms/{platform}/sbom",
             summary="The image's CycloneDX SBOM, as stored beside it in the registry")
    def api_image_sbom(request: Request, name: str, platform: str) -> Response:
        def make() -> bytes:
            cell = views.sbom_of(snapshot(), name, platform)
            repo = cell.ref.partition("/")[2].rsplit(":", 1)[0]
            try:
                return catalog.reader.sbom_document(repo, cell.sbom or "")
            except LookupError as exc:
                raise views.NotFound(str(exc)) from None
        return cached(request, f"sbom:{name}:{platform}", make, "application/vnd.cyclonedx+json")

    @app.get("/api/images/{name}/diff",
             summary="Packages added, removed and changed between two builds, size delta,"
                     " both ABI audits' verdicts")
    def api_image_diff(request: Request, name: str, a: str = Query(..., max_length=200),
                       b: str = Query(..., max_length=200)) -> Response:
        return api(request, f"api:diff:{name}:{a}:{b}", lambda: comparison(name, a, b))

    @app.get("/api/wheels", summary="Published wheels, with their test records")
    async def api_wheels(request: Request,
                   platform: str | None = Query(None, max_length=64),
                   project: str | None = Query(None, max_length=200)) -> Response:
        return api(request, f"api:wheels:{platform}:{project}",
                   lambda: views.wheels(snapshot(), platform, project))

    @app.get("/api/combos", summary="Which wheels an image takes, which images a wheel fits")
    async def api_combos(request: Request,
                   image: str | None = Query(None, max_length=200),
                   wheel: str | None = Query(None, max_length=200)) -> Response:
        return api(request, f"api:combos:{image}:{wheel}",
                   lambda: views.combos(snapshot(), image, wheel))

    app.add_middleware(FastPath, catalog=catalog)
    app.add_middleware(Headers)  # added last: outermost

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": catalog.snapshot is not None, "stale": catalog.error,
                             "version": catalog.version, "refreshed_at": catalog.refreshed_at})

    return app
