"""The console's own assets (no CDN): stylesheet, script, icons."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response

from cardsvc.console._pages import ConsoleRoute, Refusal

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
_STATIC = {path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix])
           for path in STATIC_DIR.iterdir() if path.suffix in _MEDIA_TYPES}


@router.get("/console/static/{name}")
async def static_asset(name: str) -> Response:
    asset = _STATIC.get(name)
    if asset is None:
        raise Refusal(404, "NOT_FOUND")
    content, media_type = asset
    return Response(content, media_type=media_type, headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
