"""/playground: the web page that talks to mmserve's own public API from a browser."""

from fastapi import APIRouter

router = APIRouter()
