"""Text-to-music deployment: a diffusion text-to-audio model (Stable Audio) through diffusers."""

from __future__ import annotations

from ray import serve

from deployments.common import ModelReplica, in_thread
from mmserve.catalog import ModelArgs
from mmserve.media import encode_wav
from mmserve.protocol.music import MusicRequest


@serve.deployment(name="music")
class MusicGeneration(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)

    async def generate_wav(self, request: MusicRequest) -> bytes:
        """WAV bytes (the model's channels and rate); encoded here so only bytes cross the network."""
        self.runner.validate(request)
        audio = await in_thread(self.runner.generate, request)
        return encode_wav(audio.T, self.runner.sample_rate)
