"""``lmdeploy/pipeline.py`` of 0.18.0: ``Pipeline`` with the real signatures and control flow.

As in the real one, every request runs as a task on the pipeline's own event-loop thread
(``internal_thread``) and results travel to the caller through a ``queue.Queue``:
``stream_infer`` submits the work *when it is called* and returns ``iter(que.get, None)``, so
dropping or closing that iterator stops nothing; only ``Session.abort()`` (or ``close()``) does.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
from collections.abc import Iterator
from functools import partial
from queue import Queue
from threading import Thread
from typing import TYPE_CHECKING

from ._standin import PIPELINES, recorded
from .messages import GenerationConfig, PytorchEngineConfig, Response, TurbomindEngineConfig
from .serve.core.async_engine import AsyncEngine
from .serve.core.exceptions import ErrorCode, RequestError

if TYPE_CHECKING:
    from .serve.managers import Session

SpeculativeConfig = ChatTemplateConfig = object  # accepted and ignored by the stand-in


class MultimodalProcessor:
    """``lmdeploy.serve.processors.MultimodalProcessor.format_prompts`` and its helpers (0.18.0)."""

    @staticmethod
    def format_prompts(prompts):
        if not isinstance(prompts, list):
            prompts = [prompts]
        if all(isinstance(prompt, str) for prompt in prompts):
            return prompts
        if (MultimodalProcessor._is_openai_message(prompts)
                or all(MultimodalProcessor._is_openai_message(prompt) for prompt in prompts)):
            return prompts
        if all(MultimodalProcessor._is_str_images_pair(prompt) for prompt in prompts):
            return [[MultimodalProcessor._re_format_prompt_images_pair(prompt)] for prompt in prompts]
        raise ValueError(f'Unsupported prompts: {prompts}. Only support str, openai message format, '
                         'or (prompt, image or [images]) or (image or [images], prompt) pair.')

    @staticmethod
    def _is_openai_message(message) -> bool:
        return isinstance(message, list) and all(isinstance(msg, dict) for msg in message)

    @staticmethod
    def _is_str_images_pair(message) -> bool:
        if not (isinstance(message, tuple) and len(message) == 2):
            return False
        _1, _2 = message
        if MultimodalProcessor._is_image(_1) or MultimodalProcessor._is_image_list(_1):
            _1, _2 = _2, _1
        return isinstance(_1, str) and (MultimodalProcessor._is_image(_2) or MultimodalProcessor._is_image_list(_2))

    @staticmethod
    def _is_image(obj) -> bool:
        import PIL.Image

        return (isinstance(obj, PIL.Image.Image)
                or isinstance(obj, str) and (obj.startswith('http') or obj.startswith('data:image')))

    @staticmethod
    def _is_image_list(obj) -> bool:
        return isinstance(obj, list) and all(MultimodalProcessor._is_image(img) for img in obj)

    @staticmethod
    def _re_format_prompt_images_pair(prompt: tuple) -> dict:
        import PIL.Image

        messages = {'role': 'user', 'content': []}
        prompt, images = prompt
        prompt_first = True
        if MultimodalProcessor._is_image(prompt) or MultimodalProcessor._is_image_list(prompt):
            prompt, images = images, prompt
            prompt_first = False
        image_contents = []
        images = images if isinstance(images, list) else [images]
        for image in images:
            if isinstance(image, str):
                item = {'type': 'image_url', 'image_url': {'url': image}}
            elif isinstance(image, PIL.Image.Image):
                item = {'type': 'image_data', 'image_data': {'data': image}}
            else:
                raise ValueError('image should be a str(url/path) or PIL.Image.Image')
            image_contents.append(item)
        if prompt_first:
            messages['content'].append({'type': 'text', 'text': prompt})
            messages['content'].extend(image_contents)
        else:
            messages['content'].extend(image_contents)
            messages['content'].append({'type': 'text', 'text': prompt})
        return messages


class Pipeline:
    """Pipeline - User-facing API layer for inference."""

    @recorded('Pipeline')
    def __init__(self,
                 model_path: str,
                 backend_config: TurbomindEngineConfig | PytorchEngineConfig | None = None,
                 chat_template_config: ChatTemplateConfig | None = None,
                 log_level: str = 'WARNING',
                 max_log_len: int | None = None,
                 trust_remote_code: bool = False,
                 speculative_config: SpeculativeConfig | None = None,
                 allowed_media_domains: list[str] | None = None,
                 **kwargs):
        os.environ.setdefault('TM_LOG_LEVEL', log_level)
        if log_level not in ('CRITICAL', 'FATAL', 'ERROR', 'WARN', 'WARNING', 'INFO', 'DEBUG', 'NOTSET'):
            raise ValueError(f'Unknown level: {log_level!r}')  # what logger.setLevel raises
        if not os.path.exists(model_path):
            # the real one downloads it (get_model -> snapshot_download); tests never reach a hub
            raise OSError(f'lmdeploy stand-in: {model_path!r} is not a local folder, and the stand-in '
                          'does not download from the hub as lmdeploy.utils.get_model would')
        if isinstance(backend_config, PytorchEngineConfig):
            backend = 'pytorch'
        else:  # autoget_backend_config: TurboMind for the archs it supports (not modelled: fallback)
            backend, backend_config = 'turbomind', backend_config or TurbomindEngineConfig()
        self.async_engine = AsyncEngine(model_path, backend=backend, backend_config=backend_config,
                                        trust_remote_code=trust_remote_code, **kwargs)
        self.internal_thread = _EventLoopThread(daemon=True)
        self.limiter: asyncio.Semaphore = None
        self.session_mgr = self.async_engine.session_mgr
        self.backend_config = self.async_engine.backend_config
        self.async_engine.start_loop(self.internal_thread.loop, use_async_api=False)
        PIPELINES.append(self)

    @property
    def engine(self):
        """Stand-in only: the decoding engine whose counters tests poll."""
        return self.async_engine.engine

    @recorded('Pipeline.infer')
    def infer(self,
              prompts: list[str] | str | list[dict] | list[list[dict]] | tuple | list[tuple],
              gen_config: GenerationConfig | list[GenerationConfig] | None = None,
              do_preprocess: bool = True,
              adapter_name: str | None = None,
              use_tqdm: bool = False,
              **kwargs):
        """Run to completion; a single prompt gives one ``Response`` (whole text), else a list."""
        is_single = self._is_single(prompts)
        prompts = MultimodalProcessor.format_prompts(prompts)
        outputs = []
        requests = self._request_generator(prompts, gen_config=gen_config, do_preprocess=do_preprocess,
                                           adapter_name=adapter_name, stream_response=False, **kwargs)
        for g in self._infer(requests, multiplex=False):
            res = None
            for out in g:
                res = res.extend(out) if res else out
            outputs.append(res)
        if is_single:
            return outputs[0]
        return outputs

    @recorded('Pipeline.stream_infer')
    def stream_infer(self,
                     prompts: list[str] | str | list[dict] | list[list[dict]] | tuple | list[tuple],
                     sessions: Session | list[Session] | None = None,
                     gen_config: GenerationConfig | list[GenerationConfig] | None = None,
                     do_preprocess: bool = True,
                     adapter_name: str | None = None,
                     stream_response: bool = True,
                     **kwargs):
        """Start now; return an iterator of ``Response`` whose ``text`` is the delta."""
        prompts = MultimodalProcessor.format_prompts(prompts)
        requests = self._request_generator(prompts, sessions=sessions, gen_config=gen_config,
                                           do_preprocess=do_preprocess, adapter_name=adapter_name,
                                           stream_response=stream_response, **kwargs)
        return self._infer(requests, multiplex=True)

    @recorded('Pipeline.close')
    def close(self):
        """Close the pipeline: stop the loop thread (pending requests are dropped) and the engine."""
        self.internal_thread.close()
        self.async_engine.close()

    @recorded('Pipeline.session')
    def session(self) -> Session:
        """Create a new session."""
        return self.session_mgr.get()

    def __call__(self,
                 prompts: list[str] | str | list[dict] | list[list[dict]],
                 gen_config: GenerationConfig | list[GenerationConfig] | None = None,
                 **kwargs):
        return self.infer(prompts, gen_config=gen_config, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    @staticmethod
    def _is_single(prompts):
        return (isinstance(prompts, str) or (isinstance(prompts, tuple) and len(prompts) == 2)
                or (isinstance(prompts, list) and len(prompts) > 0 and isinstance(prompts[0], dict)))

    def _request_generator(self, prompts, sessions=None, gen_config=None, **kwargs):
        is_single = self._is_single(prompts)
        prompts = [prompts] if is_single else prompts
        if sessions is None:
            sessions = [self.session_mgr.get() for _ in prompts]
        elif not isinstance(sessions, list):
            sessions = [sessions]
        if len(prompts) != len(sessions):
            raise ValueError(f'prompts and sessions should have the same length. '
                             f'Got {len(prompts)} prompts and {len(sessions)} sessions')
        if gen_config is None:
            gen_configs = [GenerationConfig()] * len(prompts)
        elif isinstance(gen_config, list):
            gen_configs = gen_config
        else:
            gen_configs = [gen_config] * len(prompts)
        if len(prompts) != len(gen_configs):
            raise ValueError(f'input gen_config length differs from the length of prompts. '
                             f'Got {len(prompts)} prompts and {len(gen_configs)} gen_configs')
        for prompt, gen_cfg, session in zip(prompts, gen_configs, sessions):
            yield dict(session_id=session, messages=prompt, gen_config=gen_cfg, **kwargs)

    def _get_limiter(self):
        if not self.limiter:
            self.limiter = asyncio.Semaphore(self.backend_config.max_batch_size)
        return self.limiter

    def _infer(self, requests: Iterator[dict], multiplex: bool) -> Iterator:

        async def _sync_resp(req: dict, que: Queue, idx: int, sem: asyncio.Semaphore):
            input_token_len = 0
            try:
                req = dict(req)
                stream_response = req.pop('stream_response', True)
                request = await self.async_engine.preprocess(**req)
                input_token_len = request.input_token_len
                async for out in self.async_engine.generate(request, stream_response=stream_response):
                    que.put(out.to_response(idx))
            except RequestError as e:
                que.put(Response(text='', generate_token_len=0, input_token_len=input_token_len,
                                 finish_reason='error', token_ids=[], index=idx, error_code=e.code.value,
                                 error_message=e.message))
            except Exception:
                error = RequestError(ErrorCode.INTERNAL_ERROR)
                que.put(Response(text='', generate_token_len=0, input_token_len=input_token_len,
                                 finish_reason='error', token_ids=[], index=idx, error_code=error.code.value,
                                 error_message=error.message))
            finally:
                sem.release()
                if not multiplex:
                    que.put(None)

        que = Queue()

        async def _infer():
            sem = self._get_limiter()
            tasks = []
            for idx, req in enumerate(requests):
                await sem.acquire()
                dst = que if multiplex else Queue()
                if not multiplex:
                    que.put(iter(dst.get, None))
                tasks.append(asyncio.create_task(_sync_resp(req, dst, idx, sem)))
            if not multiplex:
                que.put(None)
            await asyncio.gather(*tasks)
            if multiplex:
                que.put(None)

        asyncio.run_coroutine_threadsafe(_infer(), self.internal_thread.loop).add_done_callback(
            lambda f: None if f.cancelled() else f.result())
        return iter(que.get, None)


class _EventLoopThread:
    """The pipeline's event-loop thread (daemon; closed at exit like the real one)."""

    def __init__(self, daemon=False):
        fut = concurrent.futures.Future()
        self.thread = Thread(target=partial(self._thread_entry, fut), daemon=daemon, name='lmdeploy-standin-loop')
        self.thread.start()
        self.loop: asyncio.AbstractEventLoop = fut.result()
        self.closed = False
        if daemon:
            atexit.register(self.close)

    def _thread_entry(self, fut):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        fut.set_result(loop)
        try:
            loop.run_forever()
        finally:
            try:
                to_cancel = asyncio.all_tasks(loop)
                for task in to_cancel:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
