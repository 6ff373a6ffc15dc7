"""The HTTP face of mmserve: the FastAPI ingress deployment (`ingress`), its OpenAI routes, the flow
routes, /v1/realtime and the playground, with auth, limits, admission and the error format.

Torch-free: requests are decoded and checked here, once, and models are reached by handle.
"""
