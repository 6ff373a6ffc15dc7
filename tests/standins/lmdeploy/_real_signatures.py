"""Signatures of lmdeploy 0.18.0's entry points, as read from its source.

Source: the PyPI wheel ``lmdeploy-0.18.0-cp311-cp311-manylinux_2_28_x86_64.whl`` (sha256
e6790a25dcdb0345c160567fdf2ac604fec319389523a8b806834c9d92c8ffe1; ``lmdeploy/version.py`` says
``__version__ = '0.18.0'``). Extracted with ``ast`` from the files named in each key's module
(``lmdeploy/api.py``, ``lmdeploy/pipeline.py``, ``lmdeploy/messages.py``,
``lmdeploy/serve/managers/session_manager.py``, ``lmdeploy/serve/core/exceptions.py``): for a
function its parameter list, for a dataclass its fields in declaration order (a field declared
twice, ``TurbomindEngineConfig.devices``, keeps its first position and its last declaration).
``tests/test_standin_lmdeploy.py`` checks that the stand-in has exactly these.
"""

REAL_SIGNATURES = {
    'lmdeploy.pipeline': (
        "(model_path: str, backend_config: TurbomindEngineConfig | PytorchEngineConfig | None = None, chat_template_config: ChatTemplateConfig | None = None, log_level: str = 'WARNING', max_log_len: int | None = None, trust_remote_code: bool = False, speculative_config: SpeculativeConfig | None = None, allowed_media_domains: list[str] | None = None, **kwargs)"
    ),
    'lmdeploy.Pipeline.__init__': (
        "(self, model_path: str, backend_config: TurbomindEngineConfig | PytorchEngineConfig | None = None, chat_template_config: ChatTemplateConfig | None = None, log_level: str = 'WARNING', max_log_len: int | None = None, trust_remote_code: bool = False, speculative_config: SpeculativeConfig | None = None, allowed_media_domains: list[str] | None = None, **kwargs)"
    ),
    'lmdeploy.Pipeline.infer': (
        '(self, prompts: list[str] | str | list[dict] | list[list[dict]] | tuple | list[tuple], gen_config: GenerationConfig | list[GenerationConfig] | None = None, do_preprocess: bool = True, adapter_name: str | None = None, use_tqdm: bool = False, **kwargs)'
    ),
    'lmdeploy.Pipeline.stream_infer': (
        '(self, prompts: list[str] | str | list[dict] | list[list[dict]] | tuple | list[tuple], sessions: Session | list[Session] | None = None, gen_config: GenerationConfig | list[GenerationConfig] | None = None, do_preprocess: bool = True, adapter_name: str | None = None, stream_response: bool = True, **kwargs)'
    ),
    'lmdeploy.Pipeline.close': (
        '(self)'
    ),
    'lmdeploy.Pipeline.session': (
        '(self)'
    ),
    'lmdeploy.Pipeline.__call__': (
        '(self, prompts: list[str] | str | list[dict] | list[list[dict]], gen_config: GenerationConfig | list[GenerationConfig] | None = None, **kwargs)'
    ),
    'lmdeploy.serve.managers.Session.abort': (
        '(self)'
    ),
    'lmdeploy.serve.managers.Session.close': (
        '(self)'
    ),
    'lmdeploy.serve.managers.Session.async_abort': (
        '(self)'
    ),
    'lmdeploy.messages.GenerationConfig': (
        "(n: int = 1, max_new_tokens: int = 512, do_sample: bool = False, top_p: float = 1.0, top_k: int = 50, min_p: float = 0.0, temperature: float = 0.8, repetition_penalty: float = 1.0, ignore_eos: bool = False, random_seed: int = None, stop_words: list[str] = None, bad_words: list[str] = None, stop_token_ids: list[int] = None, bad_token_ids: list[int] = None, min_new_tokens: int = None, skip_special_tokens: bool = True, spaces_between_special_tokens: bool = True, logprobs: int = None, logprob_start_len: int = -1, response_format: dict | None = None, logits_processors: list[LogitsProcessor] | None = None, output_logits: Literal['all', 'generation'] = None, output_last_hidden_state: Literal['all', 'generation'] = None, include_stop_str_in_output: bool = False, return_ppl: bool = False, with_cache: bool = False, preserve_cache: bool = False, migration_request: MigrationRequest | None = None, return_routed_experts: bool = False, repetition_ngram_size: int = 0, repetition_ngram_threshold: int = 0)"
    ),
    'lmdeploy.messages.TurbomindEngineConfig': (
        "(dtype: str = 'auto', gemm_input_dtype: str | None = None, model_format: str | None = None, tp: int = 1, dp: int = 1, cp: int = 1, ep: int = 1, device_num: int = None, attn_tp_size: int = None, attn_cp_size: int = None, attn_dp_size: int = None, mlp_tp_size: int = None, mlp_dp_size: int = None, outer_dp_size: int = None, nnodes: int = 1, node_rank: int = 0, dist_init_addr: str | None = None, devices: list[int] | None = None, session_len: int | None = None, max_batch_size: int = None, cache_max_entry_count: float = 0.8, cache_chunk_size: int = -1, cache_block_seq_len: int = 64, enable_prefix_caching: bool = False, cache_checkpoint_interval: int = 4096, cache_prompt: str = 'auto', cache_prompt_boundary_skip: int = 1, cache_generation: str = 'auto', quant_policy: int = 0, rope_scaling_factor: float = 0.0, use_logn_attn: bool = False, download_dir: str | None = None, revision: str | None = None, max_prefill_token_num: int = 8192, num_tokens_per_iter: int = 0, max_prefill_iters: int = 1, async_: int = 1, empty_init: bool = False, language_model_only: bool = False, communicator: str = 'nccl', moe_a2a_backend: str = 'auto', hf_overrides: dict[str, Any] | None = None, enable_metrics: bool = True)"
    ),
    'lmdeploy.messages.PytorchEngineConfig': (
        "(dtype: str = 'auto', tp: int = 1, dp: int = 1, dp_rank: int = 0, ep: int = 1, session_len: int = None, max_batch_size: int = None, attn_tp_size: int = None, mlp_tp_size: int = None, moe_tp_size: int = None, cache_max_entry_count: float = 0.8, prefill_interval: int = 16, block_size: int = 64, kernel_block_size: int = -1, num_cpu_blocks: int = 0, num_gpu_blocks: int = 0, adapters: dict[str, str] = None, max_prefill_token_num: int = 8192, cudagraph_capture_batch_sizes: list[int] | None = None, thread_safe: bool = False, enable_prefix_caching: bool = False, prefix_cache_state_budget: int = 0, prefix_cache_decode_state_interval: int = 0, device_type: str = 'cuda', eager_mode: bool = False, custom_module_map: dict[str, str] = None, download_dir: str = None, revision: str = None, quant_policy: QuantPolicy = QuantPolicy.NONE, distributed_executor_backend: str = None, empty_init: bool = False, enable_microbatch: bool = False, enable_eplb: bool = False, enable_mp_engine: bool = False, mp_engine_backend: str = 'mp', model_format: str = None, enable_metrics: bool = True, hf_overrides: dict[str, Any] | None = None, language_model_only: bool = False, logprobs_mode: str = None, enable_return_routed_experts: bool = False, enable_transfer_obj_ref: bool = False, dllm_block_length: int = None, dllm_unmasking_strategy: str = 'low_confidence_dynamic', dllm_denoising_steps: int = None, dllm_confidence_threshold: float = 0.85, role: EngineRole = EngineRole.Hybrid, migration_backend: MigrationBackend = MigrationBackend.DLSlime, kv_transfer_config: KVTransferConfig | dict[str, Any] | None = None, piecewise_cudagraph_max_tokens: int | None = None)"
    ),
    'lmdeploy.messages.Response': (
        "(text: str, generate_token_len: int, input_token_len: int, finish_reason: Literal['stop', 'length', 'error', 'abort'] | None = None, token_ids: list[int] = field(default_factory=list), logprobs: list[dict[int, float]] = None, logits: torch.Tensor = None, last_hidden_state: torch.Tensor = None, index: int = 0, routed_experts: Any = None, cached_tokens: int = 0, error_code: str | None = None, error_message: str | None = None)"
    ),
    'lmdeploy.messages.VisionConfig': (
        '(max_batch_size: int = 1, thread_safe: bool = False)'
    ),
    'lmdeploy.serve.core.exceptions.RequestError.__init__': (
        '(self, code: ErrorCode, message: str | None = None)'
    ),
}
