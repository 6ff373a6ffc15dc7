"""Text-to-music deployment: a diffusion text-to-audio model (Stable Audio) through diffusers."""

from __future__ import annotations

from pydantic import Field
from ray import serve

from deployments.common import ModelReplica, in_thread
from mmserve.config import DeploymentArgs, Strict
from mmserve.media import encode_wav
from mmserve.protocol.music import MusicRequest
from mmserve.runners.music import MusicArgs, MusicRunner


class MusicDeploymentArgs(Strict):
    served_name: str = "stable-audio"
    runner: MusicArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)


@serve.deployment(name="music")
class MusicGeneration(ModelReplica):
    def __init__(self, args: MusicDeploymentArgs):
        self.runner = self.load_runner(MusicRunner, args.runner, warmup=args.deployment.warmup)

    async def generate_wav(self, request: MusicRequest) -> bytes:
        """WAV bytes (the model's channels and rate); encoded here so only bytes cross the network."""
        self.runner.validate(request)
        audio = await in_thread(self.runner.generate, request)
        return encode_wav(audio.T, self.runner.sample_rate)


def build(args: MusicDeploymentArgs):
    return MusicGeneration.options(**args.deployment.serve_options()).bind(args)
