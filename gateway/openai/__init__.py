"""OpenAI-compatible routes, laid out as vLLM does: `protocol` holds the request schemas, and each
endpoint family has a module with its serving code and its own router.

Switching a client to mmserve is a base-URL change.
"""

from gateway.openai import chat, images, models, music, speech, transcriptions

ROUTERS = [models.router, transcriptions.router, speech.router, images.router, music.router, chat.router]
