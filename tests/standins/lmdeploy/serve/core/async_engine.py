"""``lmdeploy/serve/core/async_engine.py`` of 0.18.0, reduced to what ``Pipeline`` uses.

``preprocess`` applies the model folder's chat template, tokenizes, checks the context length
and normalizes the ``GenerationConfig`` exactly where and how the real one does, raising the same
``RequestError`` codes; ``generate`` turns engine outputs into ``GenOut`` deltas and a final
``GenOut`` with the finish reason, as the real loop does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
from contextlib import asynccontextmanager
from copy import deepcopy
from typing import Any, Literal

from ..._engine import StandinEngine, StandinTokenizer
from ..._standin import SETTINGS
from ...messages import GenerationConfig, PytorchEngineConfig, Response, ResponseType, TurbomindEngineConfig
from ..managers import Session, SessionManager
from .exceptions import ErrorCode, RequestError, SafeRunException

# lmdeploy/archs.py check_vl_llm: the architectures served by VLAsyncEngine (0.18.0 list)
VL_ARCHS = {
    'LlavaLlamaForCausalLM', 'LlavaMistralForCausalLM', 'CogVLMForCausalLM', 'InternVLChatModel', 'MiniCPMV',
    'LlavaForConditionalGeneration', 'LlavaNextForConditionalGeneration', 'Phi3VForCausalLM',
    'Qwen2VLForConditionalGeneration', 'Qwen2_5_VLForConditionalGeneration', 'Qwen3VLForConditionalGeneration',
    'Qwen3VLMoeForConditionalGeneration', 'Qwen3_5ForConditionalGeneration', 'Qwen3_5MoeForConditionalGeneration',
    'Qwen3OmniMoeForConditionalGeneration', 'MolmoForCausalLM', 'Gemma3ForConditionalGeneration',
    'Llama4ForConditionalGeneration', 'InternVLForConditionalGeneration', 'InternS1ForConditionalGeneration',
    'InternS1ProForConditionalGeneration', 'InternS1_1_ForConditionalGeneration', 'Glm4vForConditionalGeneration',
    'InternS2MobiusForConditionalGeneration', 'InternS2MobiusForCausalLM',
    'InternS2PreviewForConditionalGeneration', 'InternS2PreviewForCausalLM', 'KimiK25ForConditionalGeneration',
    'Kimi_K25ForConditionalGeneration',
}
MULTIMODAL_TYPES = ('image_url', 'image_data', 'image', 'video_url', 'video', 'audio_url', 'audio',
                    'time_series_url', 'time_series')


def _get_and_verify_max_len(hf_config, max_model_len: int | None) -> int:
    """``lmdeploy.utils._get_and_verify_max_len``: the smallest length key of the (text) config."""
    for key in ['language_config', 'llm_config', 'text_config']:
        hf_config = getattr(hf_config, key, hf_config)
    if hasattr(hf_config, 'thinker_config'):
        hf_config = hf_config.thinker_config.text_config
    derived = float('inf')
    for key in ['max_position_embeddings', 'n_positions', 'max_seq_len', 'seq_length', 'model_max_length',
                'max_sequence_length', 'max_seq_length', 'seq_len']:
        max_len = getattr(hf_config, key, None)
        if max_len is not None:
            derived = min(derived, max_len)
    if derived == float('inf'):
        if max_model_len is not None:
            return max_model_len
        derived = 2048
    return int(derived) if max_model_len is None else int(max_model_len)


def check_vl_llm(config: dict) -> bool:
    if 'language_config' in config and 'vision_config' in config and config['language_config'].get(
            'architectures', [None])[0] == 'DeepseekV2ForCausalLM':
        return True
    arch = config['architectures'][0]
    if arch == 'MultiModalityCausalLM' and 'language_config' in config:
        return True
    if arch in ['ChatGLMModel', 'ChatGLMForConditionalGeneration'] and 'vision_config' in config:
        return True
    return arch in VL_ARCHS


@dataclasses.dataclass
class GenOut:
    response: str
    input_token_len: int
    generate_token_len: int
    finish_reason: Literal['stop', 'length', 'error', 'abort'] | None = None
    token_ids: list[int] | None = None

    def to_response(self, index: int = 0) -> Response:
        return Response(text=self.response, generate_token_len=self.generate_token_len,
                        input_token_len=self.input_token_len, finish_reason=self.finish_reason,
                        token_ids=self.token_ids or [], index=index)


@dataclasses.dataclass(slots=True)
class PreprocessedRequest:
    session: Session
    inputs: dict[str, Any]
    input_token_len: int
    gen_config: GenerationConfig
    adapter_name: str | None
    consumed: bool = False


class AsyncEngine:
    """The pipeline's engine front: model config, tokenizer, session length, sessions, engine."""

    def __init__(self, model_path: str, backend: Literal['turbomind', 'pytorch'] = 'turbomind',
                 backend_config: TurbomindEngineConfig | PytorchEngineConfig | None = None,
                 trust_remote_code: bool = False, **kwargs) -> None:
        from transformers import AutoConfig

        backend_config = backend_config or (TurbomindEngineConfig() if backend == 'turbomind'
                                            else PytorchEngineConfig())
        self.model_name = model_path
        self.hf_cfg = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.arch = (self.hf_cfg.architectures or [None])[0]
        self.is_vl = check_vl_llm(self.hf_cfg.to_dict()) and not backend_config.language_model_only
        self.tokenizer = StandinTokenizer(model_path, trust_remote_code=trust_remote_code)
        gen_cfg_file = os.path.join(model_path, 'generation_config.json')
        self.hf_gen_cfg = {}
        if os.path.exists(gen_cfg_file):
            with open(gen_cfg_file) as f:
                self.hf_gen_cfg = json.load(f)
        self.session_len = (_get_and_verify_max_len(self.hf_cfg, None)
                            if backend_config.session_len is None else backend_config.session_len)
        backend_config.session_len = self.session_len
        if backend_config.max_batch_size is None:
            backend_config.max_batch_size = SETTINGS.max_batch_size
        self.backend = backend
        self.backend_config = backend_config
        self.engine = StandinEngine(backend, SETTINGS.step_s, self.tokenizer.plain_ids, SETTINGS.stop_after)
        self.session_mgr = SessionManager()
        self.session_mgr.build_request_handle_pool(self.engine, backend_config.max_batch_size)
        self.epoch = 0

    def close(self):
        self.session_mgr.clear()
        self.engine.close()

    def start_loop(self, loop, use_async_api=False):
        self.session_mgr.attach_event_loop(loop)
        return True

    # --- preprocess: chat template, tokens, length check, GenerationConfig --------------------------
    def _image_tokens(self) -> int:
        if SETTINGS.image_tokens is not None:
            return SETTINGS.image_tokens
        seq = getattr(self.hf_cfg, 'image_seq_length', None)
        return seq + 2 if seq else 258  # <img> + context tokens + </img>; InternVL 448px tile: 256

    def _encode_images(self, images: list) -> None:
        """Stand-in for the vision preprocessor: what makes a real one fail makes this one fail."""
        import PIL.Image

        for image in images:
            if not isinstance(image, PIL.Image.Image):
                raise ValueError(f'Invalid multimodal image item: {image!r}. '
                                 'Expected a str URL/path/data URL or PIL.Image.Image.')
            rgb = image.convert('RGB')  # a truncated/corrupt file raises OSError here, as in the real one
            width, height = rgb.size
            _ = width / height  # InternVL's dynamic_preprocess divides by the height: 0 fails

    def _prompt_input(self, messages, do_preprocess: bool) -> dict:
        if isinstance(messages, str):
            messages = [{'role': 'user', 'content': messages}]
        has_mm = any(isinstance(m.get('content'), list) and any(
            isinstance(i, dict) and i.get('type') in MULTIMODAL_TYPES for i in m['content']) for m in messages)
        if has_mm and not self.is_vl:
            raise ValueError('Multimodal input is not supported by this model.')
        images, text_messages = [], []
        for m in messages:
            content = m.get('content')
            if isinstance(content, list):
                texts = []
                for item in content:
                    kind = item.get('type')
                    if kind == 'text':
                        texts.append(item.get('text', ''))
                    elif kind in ('image_data', 'image', 'image_url'):
                        val = item.get(kind, {})
                        images.append(val.get('data', val.get('url')) if isinstance(val, dict) else val)
                    else:
                        raise NotImplementedError(f'stand-in: multimodal type {kind!r} is not modelled')
                content = '\n'.join(texts)
            text_messages.append({'role': m['role'], 'content': content or ''})
        if images:
            self._encode_images(images)
        if do_preprocess:
            prompt = self.tokenizer.model.apply_chat_template(text_messages, add_generation_prompt=True,
                                                              tokenize=False)
        else:
            prompt = ''.join(m['content'] for m in text_messages)
        input_ids = self.tokenizer.encode(prompt, add_bos=True)
        pad = self.tokenizer.plain_ids[0]
        input_ids = input_ids + [pad] * (self._image_tokens() * len(images))
        return {'prompt': prompt, 'input_ids': input_ids}

    def _determine_gen_config(self, input_ids, gen_config: GenerationConfig | None = None) -> GenerationConfig:
        gen_config = deepcopy(gen_config) or GenerationConfig()
        gen_config.convert_stop_bad_words_to_ids(self.tokenizer)
        gen_config.stop_token_ids = gen_config.stop_token_ids or None
        gen_config.update_from_hf_gen_cfg(self.hf_gen_cfg, self.tokenizer.eos_token_id)
        if not gen_config.do_sample:
            gen_config.top_k = 1
            gen_config.temperature = 1.0
            gen_config.repetition_penalty = 1.0
        elif gen_config.random_seed is None:
            gen_config.random_seed = random.getrandbits(64)
        if gen_config.n > 1:
            gen_config.n = 1
        if gen_config.max_new_tokens is None:
            gen_config.max_new_tokens = max(0, self.session_len - len(input_ids))
        return gen_config

    async def preprocess(self, messages, session_id: int | Session, gen_config: GenerationConfig | None = None,
                         do_preprocess: bool = True, adapter_name: str | None = None, input_ids: list | None = None,
                         **kwargs) -> PreprocessedRequest:
        session = None
        try:
            if (messages is not None) ^ (input_ids is None):
                raise RequestError(ErrorCode.INVALID_REQUEST, 'You must specify exactly one of messages or input_ids.')
            if isinstance(session_id, Session):
                session = session_id
            elif isinstance(session_id, int):
                session = self.session_mgr.get(session_id)
            else:
                raise RequestError(ErrorCode.INVALID_REQUEST,
                                   f'Invalid session_id: {session_id}. It must be a Session or an integer.')
            if session._handle is not None:
                raise RequestError(ErrorCode.REQUEST_CONFLICT,
                                   f'Session {session.session_id} already has an active request.')
            if SETTINGS.preprocess_s:
                await asyncio.sleep(SETTINGS.preprocess_s)
            prompt_input = (self._prompt_input(messages, do_preprocess) if messages is not None
                            else dict(input_ids=input_ids))
            input_ids = prompt_input.get('input_ids')
            if input_ids is None:
                raise RequestError(ErrorCode.PREPROCESS_FAILED)
            input_len = len(input_ids)
            if input_len >= self.session_len:
                raise RequestError(
                    ErrorCode.CONTEXT_LENGTH_EXCEEDED,
                    f'Input length ({input_len}) must be smaller than the model context length ({self.session_len}).')
            gen_config = self._determine_gen_config(input_ids, gen_config=gen_config)
            if gen_config.max_new_tokens < 1 and not gen_config.logprob_start_len >= 0:
                raise RequestError(ErrorCode.INVALID_REQUEST,
                                   f'max_new_tokens must be at least 1, got {gen_config.max_new_tokens}.')
            return PreprocessedRequest(session=session, inputs=prompt_input, input_token_len=input_len,
                                       gen_config=gen_config, adapter_name=adapter_name)
        except (asyncio.CancelledError, GeneratorExit):
            self.session_mgr.remove(session)
            raise
        except RequestError:
            self.session_mgr.remove(session)
            raise
        except (TypeError, ValueError) as e:
            self.session_mgr.remove(session)
            raise RequestError(ErrorCode.INVALID_REQUEST, str(e)) from e
        except Exception as e:
            self.session_mgr.remove(session)
            raise RequestError(ErrorCode.PREPROCESS_FAILED) from e

    # --- generate ---------------------------------------------------------------------------------
    @asynccontextmanager
    async def safe_run(self, handle, session, **kwargs):
        generator = handle.async_stream_infer(session.session_id, session_len=self.session_len, **kwargs)

        async def cleanup_after_exception():
            try:
                await asyncio.shield(handle.async_cancel(session.session_id))
            except asyncio.CancelledError:
                pass

        try:
            yield generator
        except (asyncio.CancelledError, GeneratorExit) as e:
            await cleanup_after_exception()
            raise SafeRunException(f'Safe run exception for session {session.session_id}') from e
        except Exception as e:
            await cleanup_after_exception()
            raise RequestError(ErrorCode.INTERNAL_ERROR) from e
        finally:
            await generator.aclose()

    async def generate(self, request: PreprocessedRequest, stream_response: bool = True):
        if not isinstance(request, PreprocessedRequest):
            raise TypeError('generate requires a PreprocessedRequest returned by preprocess')
        if request.consumed:
            raise RequestError(ErrorCode.REQUEST_CONFLICT, 'The preprocessed request has already been consumed.')
        request.consumed = True
        session, gen_config = request.session, request.gen_config
        input_ids, input_len = request.inputs['input_ids'], request.input_token_len
        stop_ids = [] if gen_config.ignore_eos else (gen_config.stop_token_ids or [])
        session._remove_on_request_exit = True
        async with session.request_handle() as handle:
            token_ids: list[int] = []
            state = [0, 0]
            response, finish_reason, gen_len = '', None, 0
            async with self.safe_run(handle, session=session, input_ids=input_ids, gen_config=gen_config,
                                     stream_output=stream_response) as gen:
                hit_stop_token = 0
                outputs = None
                async for outputs in gen:
                    if not outputs.token_ids or hit_stop_token:
                        continue
                    if outputs.token_ids[-1] in stop_ids:
                        hit_stop_token = 1
                    new = outputs.token_ids[:len(outputs.token_ids) - hit_stop_token]
                    offset = len(token_ids)
                    token_ids += new
                    gen_len = len(token_ids)
                    response = self.tokenizer.detokenize_incrementally(
                        token_ids, state, skip_special_tokens=gen_config.skip_special_tokens)
                    yield GenOut(response, input_len, gen_len, None, token_ids=token_ids[offset:])
                if outputs is not None and outputs.status == ResponseType.CANCEL:
                    finish_reason = 'abort'
                else:
                    finish_reason = 'stop' if outputs and outputs.token_ids and outputs.token_ids[-1] in stop_ids \
                        else 'length'
                if not response.endswith('\ufffd'):
                    response = ''  # avoid returning the last response twice
                yield GenOut(response, input_len, gen_len, finish_reason, token_ids=[])
        self.session_mgr.remove(session)
