"""OpenAI-compatible routes, laid out as vLLM does: `protocol` holds the request schemas, and each
endpoint family has a module with its serving code and its own router.

Switching a client to mmserve is a base-URL change.
"""

from gateway.openai import models
from mmserve.lazy import import_attr
from mmserve.tasks import TASKS

# /v1/models, then each task's router as its declaration names it (two tasks may share one)
ROUTERS = [models.router, *(import_attr(path) for path in dict.fromkeys(task.router for task in TASKS.values()))]
