"""Typed requests and results passed between the gateway, the flows and the model replicas.

They live apart from the runners so that the CPU gateway can build and read them without importing
the model libraries (torch, transformers, diffusers, funasr, ChatTTS): these modules may import
numpy, PIL and pydantic only. One module per task; the runners import their types from here.
"""
