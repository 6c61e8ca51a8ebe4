"""The interactive API reference at ``/docs``, served whole from this app (P16.3).

FastAPI's own page loads Swagger UI from a CDN and is blank at a counter without internet;
here its script, stylesheet and icon are files of the pinned ``swagger-ui-py`` package
(Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes), served at
:data:`ASSETS_PATH`. ReDoc (also CDN-only) is not offered.

Example::

    app = FastAPI(docs_url=None, redoc_url=None)
    app.include_router(router)      # GET /docs, /docs/oauth2-redirect, /static/swagger/...
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

__all__ = ["ASSETS_PATH", "DOCS_PATH", "router"]

DOCS_PATH = "/docs"
ASSETS_PATH = "/static/swagger"
_OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"
_TITLE = "Foreign Merchant Card authority: API"


def _bundle_dir() -> Path:
    # Located, not imported: importing swagger_ui loads its web-framework adapters.
    spec = find_spec("swagger_ui")
    assert spec is not None and spec.origin is not None, "swagger-ui-py is a dependency"
    return Path(spec.origin).parent / "static"


_BUNDLE_DIR = _bundle_dir()
# Only what the page uses: the package also ships Swagger Editor and source maps.
_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
           "swagger-ui.css": "text/css; charset=utf-8",
           "favicon-32x32.png": "image/png"}

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=_TITLE,
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        oauth2_redirect_url=_OAUTH2_REDIRECT_PATH,
        # The default validator badge would send the schema to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(_OAUTH2_REDIRECT_PATH)
def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(ASSETS_PATH + "/{name}")
def swagger_ui_asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(_BUNDLE_DIR / name, media_type=media_type, headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
