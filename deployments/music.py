"""Text-to-music deployment: a diffusion text-to-audio model (Stable Audio) through diffusers."""

from __future__ import annotations

from ray import serve

from deployments.calls import cancelled_with_caller, in_thread
from deployments.common import ModelReplica
from mmserve.catalog import ModelArgs
from mmserve.media import encode_wav
from mmserve.protocol.music import MusicRequest
from mmserve.runners.progress import Cancel


@serve.deployment(name="music")
class MusicGeneration(ModelReplica):
    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)

    async def generate_wav(self, request: MusicRequest) -> bytes:
        """WAV bytes (the model's channels and rate); encoded here so only bytes cross the network.
        A caller that goes away stops the denoising loop after its current step."""
        self.runner.validate(request)
        cancel = Cancel(self.runner.progress)
        async with cancelled_with_caller(cancel):
            audio = await in_thread(self.runner.generate, request, cancel)
        return encode_wav(audio.T, self.runner.sample_rate)
