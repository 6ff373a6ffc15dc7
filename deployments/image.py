"""Text-to-image deployment: Stable Diffusion 3 via diffusers, compatible requests batched."""

from __future__ import annotations

from ray import serve

from deployments import metrics
from deployments.calls import cancelled_with_caller, in_thread, timed
from deployments.common import BatchedReplica
from mmserve.catalog import ModelArgs
from mmserve.media import encode_png
from mmserve.protocol.image import ImageRequest
from mmserve.runners.progress import Cancel


@serve.deployment(name="image")
class ImageGeneration(BatchedReplica):
    batched_method = "generate_batch"

    def __init__(self, model: ModelArgs):
        self.runner = self.load_runner(model)
        self.apply_batching(model.batching)

    async def generate(self, request: ImageRequest) -> list[bytes]:
        """PNG bytes, one per requested image; encoded here so only bytes cross the network.

        Validated before batching, so one bad request fails alone instead of failing its batch. A
        caller that goes away (client disconnected) sets its Cancel; the denoising loop stops once
        every request of its pipeline call has gone.
        """
        self.runner.validate(request)
        cancel = Cancel(self.runner.progress)
        async with cancelled_with_caller(cancel):
            return await self.generate_batch(request, cancel)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def generate_batch(self, requests: list[ImageRequest], cancels: list[Cancel]) -> list[list[bytes]]:
        def run() -> list[list[bytes]]:
            return [[encode_png(img) for img in images] for images in self.runner.generate(requests, cancels)]

        results, elapsed = await timed(in_thread(run))
        made = sum(len(pngs) for pngs in results)
        metrics.batch_size().observe(len(requests))
        metrics.images_generated().inc(made)
        metrics.seconds_per_image().observe(elapsed / max(made, 1))
        return results
