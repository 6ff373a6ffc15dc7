"""/playground: a web page that talks to mmserve's own public API from a browser.

A plain page (HTML, vanilla JS, CSS; no build step) rather than Gradio: Gradio would add a large
dependency to the torch-free gateway, and it cannot stream microphone PCM over our own /v1/realtime
WebSocket the way a page does. The page calls exactly the routes users call (with the API key the
user types in), so it doubles as a live example of the public API.

The page and its assets are open paths (no key needed to load them); every API call it makes
carries the key. The files ship as package data (gateway/playground/static/).
"""

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

router = APIRouter()
PAGE = "/playground"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
STATIC = resources.files(__package__) / "static"
ASSETS = sorted(p.name for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES and p.name != "index.html")
# What the gateway serves without an API key (gateway/ingress.py:OPEN_PATHS).
PAGE_PATHS = frozenset({PAGE, PAGE + "/", *(f"{PAGE}/{name}" for name in ASSETS)})


def _file(name: str) -> Response:
    path = STATIC / name
    suffix = "." + name.rsplit(".", 1)[-1]
    # no-cache: the browser revalidates, so a redeployed gateway's page is picked up at once
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[suffix], headers={"Cache-Control": "no-cache"})


@router.get(PAGE, include_in_schema=False)
async def page() -> Response:
    return _file("index.html")


@router.get(PAGE + "/", include_in_schema=False)
async def page_with_slash() -> RedirectResponse:
    """The page resolves its assets and the API relative to /playground, without the slash."""
    return RedirectResponse("../playground", status_code=308)


@router.get(PAGE + "/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no playground file {name!r}")
    return _file(name)
