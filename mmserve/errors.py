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


class ReplicaUnavailable(Overloaded):
    """The replica serving a stage died (or its node did) before answering: the server's trouble,
    not a bug in the request, so a retryable 503 rather than a 500."""

    code = "replica_unavailable"


class StageTimeout(MMServeError):
    """A stage did not answer within its configured deadline (a stuck or starved replica)."""

    status_code = 504
    code = "stage_timeout"


class StageFailed(MMServeError):
    """A stage of a flow failed; the error names the stage."""

    status_code = 500
    code = "stage_failed"


class ConfigError(MMServeError):
    """The configuration cannot work on this machine (e.g. 4-bit quantization without a GPU)."""

    code = "config_error"


def model_load_error(what: str, model: str, exc: BaseException) -> ConfigError:
    """A ConfigError that says why `model` did not load, with the fix for a gated hub repository.

    SD3 Medium and Stable Audio Open are gated: their hub downloads need an accepted licence and a
    token, which huggingface_hub reads from HF_TOKEN in the replica's environment.
    """
    from pathlib import Path

    cause: BaseException | None = exc
    while cause is not None and type(cause).__name__ != "GatedRepoError":
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return ConfigError(
            f"{model!r} is a gated repository: accept its licence on the hub, then set HF_TOKEN on every Ray "
            "node (exported before `ray start`/`serve run`, or in the application's runtime_env.env_vars), "
            "or point model: at a folder of downloaded weights",
            field="model",
        )
    where = "folder" if Path(model).exists() else "folder (not found) or hub id"
    return ConfigError(f"cannot load {what} from {where} {model!r}: {exc}", field="model")
