"""Stand-in for ``lmdeploy.serve.core``."""

from .async_engine import AsyncEngine, GenOut, PreprocessedRequest
from .exceptions import ErrorCode, RequestError

__all__ = ["AsyncEngine", "ErrorCode", "GenOut", "PreprocessedRequest", "RequestError"]
