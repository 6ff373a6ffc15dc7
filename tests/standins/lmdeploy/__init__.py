"""A CPU stand-in for lmdeploy 0.18.0 (``pipeline``, the engine configs, ``GenerationConfig``).

Import it through ``tests.standins.lmdeploy_fixture`` (``fake_lmdeploy`` fixture or
``install()``), which loads a fresh copy under the name ``lmdeploy``. Real signatures, real
config checks, real error codes; generation is random tokens of the model folder's tokenizer on
an engine thread of its own. What is and is not modelled: ``tests/standins/LMDEPLOY_0_18.md``.
"""

from . import _standin  # noqa: F401  (the fixture reads the recorder and settings through it)
from .api import pipeline
from .messages import GenerationConfig, KVTransferConfig, PytorchEngineConfig, TurbomindEngineConfig, VisionConfig
from .pipeline import Pipeline
from .version import __version__, version_info

__all__ = [
    'pipeline', 'GenerationConfig', '__version__', 'version_info', 'PytorchEngineConfig', 'TurbomindEngineConfig',
    'VisionConfig', 'Pipeline', 'KVTransferConfig'
]


def __getattr__(name):
    if name in ('serve', 'client', 'Tokenizer', 'ChatTemplateConfig'):
        raise AttributeError(f"the lmdeploy stand-in does not model lmdeploy.{name} (mmserve does not use it)")
    raise AttributeError(f"module 'lmdeploy' has no attribute {name!r}")
