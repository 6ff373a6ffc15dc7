"""Error types shared by runners, deployments and the gateway.

Runners raise these; the gateway turns them into JSON errors with the right status, so a bad
request never surfaces as a 500 and never takes a replica down.
"""

from __future__ import annotations


class MMServeError(Exception):
    """Base class: carries an HTTP status and a machine-readable code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.stage = stage

    def to_dict(self) -> dict:
        err = {"message": self.message, "type": self.code, "code": self.code}
        if self.field:
            err["param"] = self.field
        if self.stage:
            err["stage"] = self.stage
        return {"error": err}


class InvalidInput(MMServeError):
    """The request is malformed: wrong type, out of range, undecodable media."""

    status_code = 400
    code = "invalid_request_error"


class PayloadTooLarge(MMServeError):
    """The request is larger than a configured limit (bytes, seconds, pixels)."""

    status_code = 413
    code = "payload_too_large"


class Overloaded(MMServeError):
    """A bounded queue is full: answer fast and let the client retry."""

    status_code = 503
    code = "overloaded"

    def __init__(self, message: str = "server is overloaded, retry later", *, retry_after_s: int = 1, **kw):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class StageFailed(MMServeError):
    """A stage of a flow failed; the error names the stage."""

    status_code = 500
    code = "stage_failed"


class ConfigError(MMServeError):
    """The configuration cannot work on this machine (e.g. 4-bit quantization without a GPU)."""

    code = "config_error"
