"""``lmdeploy/api.py`` of 0.18.0: ``pipeline`` (same signature; builds the stand-in ``Pipeline``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._standin import recorded
from .pipeline import Pipeline

if TYPE_CHECKING:
    from .messages import PytorchEngineConfig, TurbomindEngineConfig

    SpeculativeConfig = ChatTemplateConfig = object


@recorded('pipeline')
def pipeline(model_path: str,
             backend_config: TurbomindEngineConfig | PytorchEngineConfig | None = None,
             chat_template_config: ChatTemplateConfig | None = None,
             log_level: str = 'WARNING',
             max_log_len: int | None = None,
             trust_remote_code: bool = False,
             speculative_config: SpeculativeConfig | None = None,
             allowed_media_domains: list[str] | None = None,
             **kwargs):
    """Create a pipeline for inference (a ``Pipeline`` on the model folder ``model_path``)."""
    return Pipeline(model_path,
                    backend_config=backend_config,
                    chat_template_config=chat_template_config,
                    log_level=log_level,
                    max_log_len=max_log_len,
                    trust_remote_code=trust_remote_code,
                    speculative_config=speculative_config,
                    allowed_media_domains=allowed_media_domains,
                    **kwargs)
