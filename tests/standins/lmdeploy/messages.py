"""lmdeploy 0.18.0 ``lmdeploy/messages.py``: the config dataclasses and ``Response``, field for field.

Fields, defaults and ``__post_init__`` checks are those of the 0.18.0 wheel (see
``tests/standins/LMDEPLOY_0_18.md``); ``_real_signatures.py`` holds the real field lists and
``tests/test_standin_lmdeploy.py`` compares them. As in the real module, ``TurbomindEngineConfig``
is a *pydantic* dataclass (its types are validated, and a failed assertion surfaces as a pydantic
``ValidationError``, a ``ValueError``), the other two are plain dataclasses (``AssertionError``).
Annotations are kept as the source text (``from __future__ import annotations``) so that they
can be compared; the types the real module imports from its engines are small stand-ins here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic.dataclasses import dataclass as pydantic_dataclass

from ._standin import record_init


class QuantPolicy(enum.IntEnum):
    """Quantization policy constants for KV cache (real values)."""

    NONE = 0
    INT4 = 4
    INT8 = 8
    FP8 = 16
    FP8_E5M2 = 17
    TURBO_QUANT = 42


class EngineRole(enum.Enum):
    """``lmdeploy.pytorch.disagg.config.EngineRole``."""

    Hybrid = enum.auto()
    Prefill = enum.auto()
    Decode = enum.auto()


class MigrationBackend(enum.Enum):
    """``lmdeploy.pytorch.disagg.config.MigrationBackend``."""

    DLSlime = enum.auto()
    Mooncake = enum.auto()


MigrationRequest = Any  # lmdeploy.pytorch.disagg.conn.protocol.MigrationRequest (not modelled)
LogitsProcessor = Callable[[Any, Any], Any]
KVTransferRole = Literal["kv_producer", "kv_consumer", "kv_both"]


@dataclass
class KVTransferConfig:
    """Configuration for an external KV-cache connector (PyTorch engine only)."""

    kv_connector: str | None = None
    kv_role: KVTransferRole | None = None
    kv_connector_extra_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        supported_roles = ("kv_producer", "kv_consumer", "kv_both")
        if self.kv_connector is None and self.kv_role is not None:
            raise ValueError("kv_connector must be specified when kv_role is set")
        if self.kv_connector is not None:
            if not isinstance(self.kv_connector, str) or not self.kv_connector.strip():
                raise ValueError("kv_connector must be a non-empty string")
            if self.kv_role is None:
                raise ValueError("kv_role must be specified when kv_connector is set")
        if self.kv_role is not None and self.kv_role not in supported_roles:
            raise ValueError(f"unsupported kv_role: {self.kv_role}; supported roles are {supported_roles}")
        if not isinstance(self.kv_connector_extra_config, dict):
            raise TypeError("kv_connector_extra_config must be a dict")


@record_init
@dataclass
class GenerationConfig:
    """Generation parameters used by inference engines (0.18.0 fields and checks)."""

    n: int = 1
    max_new_tokens: int = 512
    do_sample: bool = False
    top_p: float = 1.0
    top_k: int = 50
    min_p: float = 0.0
    temperature: float = 0.8
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    random_seed: int = None
    stop_words: list[str] = None
    bad_words: list[str] = None
    stop_token_ids: list[int] = None
    bad_token_ids: list[int] = None
    min_new_tokens: int = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    logprobs: int = None
    logprob_start_len: int = -1
    response_format: dict | None = None
    logits_processors: list[LogitsProcessor] | None = None
    output_logits: Literal['all', 'generation'] = None
    output_last_hidden_state: Literal['all', 'generation'] = None
    include_stop_str_in_output: bool = False
    return_ppl: bool = False
    with_cache: bool = False
    preserve_cache: bool = False
    migration_request: MigrationRequest | None = None
    return_routed_experts: bool = False
    repetition_ngram_size: int = 0
    repetition_ngram_threshold: int = 0

    def convert_stop_bad_words_to_ids(self, tokenizer) -> None:
        """Token-level stop/bad words as in 0.18: every vocabulary entry that *contains* the word."""

        def special_word_token_ids(words):
            if words is not None:
                assert isinstance(words, list) and all(isinstance(elem, str) for elem in words), (
                    f"stop_words must be a list of str but got {type(words)}"
                )
                indexes = []
                for word in words:
                    indexes += tokenizer.indexes_containing_token(word)
                return indexes
            return None

        stop_token_ids = special_word_token_ids(self.stop_words) or []
        bad_token_ids = special_word_token_ids(self.bad_words) or []
        stop_token_ids.extend(self.stop_token_ids or [])
        bad_token_ids.extend(self.bad_token_ids or [])
        self.stop_token_ids = list(set(stop_token_ids)) or None
        self.bad_token_ids = list(set(bad_token_ids)) or None

    def update_from_hf_gen_cfg(self, generation_config: dict, tokenizer_eos_token_id) -> None:
        stop_token_ids = set(self.stop_token_ids or [])
        if tokenizer_eos_token_id is not None:
            stop_token_ids.add(tokenizer_eos_token_id)
        eos_token_id = generation_config.get("eos_token_id")
        if eos_token_id is not None:
            if isinstance(eos_token_id, int):
                stop_token_ids.add(eos_token_id)
            else:
                stop_token_ids.update(eos_token_id)
        self.stop_token_ids = list(stop_token_ids)

    def __post_init__(self):
        """Check input validation (verbatim 0.18.0 checks)."""
        assert type(self.n) is int and self.n > 0, 'n is not a positive integer'
        assert self.top_p >= 0 and self.top_p <= 1  # [0, 1]
        assert self.top_k >= 0, 'top_k can not be a negative integer'
        assert self.temperature >= 0 and self.temperature <= 2  # [0,2]
        assert 0 <= self.min_p <= 1, f'min_p should be in range [0, 1], but found {self.min_p}'
        if self.logprob_start_len < -1:
            raise ValueError('logprob_start_len must be greater than or equal to -1')
        if self.logprob_start_len >= 0 and (self.logprobs is None or self.logprobs < 0):
            raise ValueError('logprobs must be non-negative when logprob_start_len is non-negative')
        if self.repetition_ngram_size <= 0 or self.repetition_ngram_threshold <= 0:
            self.repetition_ngram_size = 0
            self.repetition_ngram_threshold = 0


@record_init
@pydantic_dataclass
class TurbomindEngineConfig:
    """TurboMind engine config (0.18.0 fields and checks; a pydantic dataclass, as in the real one)."""

    dtype: str = 'auto'
    gemm_input_dtype: str | None = None
    model_format: str | None = None
    tp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    device_num: int = None
    attn_tp_size: int = None
    attn_cp_size: int = None
    attn_dp_size: int = None
    mlp_tp_size: int = None
    mlp_dp_size: int = None
    outer_dp_size: int = None
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None
    devices: list[int] | None = None  # declared twice in 0.18.0; the second declaration wins
    session_len: int | None = None
    max_batch_size: int = None
    cache_max_entry_count: float = 0.8
    cache_chunk_size: int = -1
    cache_block_seq_len: int = 64
    enable_prefix_caching: bool = False
    cache_checkpoint_interval: int = 4096
    cache_prompt: str = 'auto'
    cache_prompt_boundary_skip: int = 1
    cache_generation: str = 'auto'
    quant_policy: int = 0
    rope_scaling_factor: float = 0.0
    use_logn_attn: bool = False
    download_dir: str | None = None
    revision: str | None = None
    max_prefill_token_num: int = 8192
    num_tokens_per_iter: int = 0
    max_prefill_iters: int = 1
    async_: int = 1
    empty_init: bool = False
    language_model_only: bool = False
    communicator: str = 'nccl'
    moe_a2a_backend: str = 'auto'
    hf_overrides: dict[str, Any] | None = None
    enable_metrics: bool = True

    def __post_init__(self):
        """Check input validation (verbatim 0.18.0 checks)."""
        assert self.dtype in ['auto', 'float16', 'bfloat16']
        assert self.gemm_input_dtype in (None, 'float16', 'bfloat16', 'float8_e4m3')
        assert self.tp >= 1, 'tp must be a positive integer'
        assert self.ep >= 1, 'ep must be a positive integer'
        assert self.cache_max_entry_count > 0, 'invalid cache_max_entry_count'
        try:
            self.quant_policy = QuantPolicy(self.quant_policy)
        except ValueError as e:
            raise ValueError(f'invalid quant_policy: {self.quant_policy}') from e
        assert self.quant_policy not in (
            QuantPolicy.FP8,
            QuantPolicy.FP8_E5M2,
        ), 'invalid quant_policy for TurboMind, FP8 quantization is not supported'
        assert self.rope_scaling_factor >= 0, 'invalid rope_scaling_factor'
        assert self.max_prefill_token_num >= 0, 'invalid max_prefill_token_num'
        assert self.num_tokens_per_iter >= 0, 'invalid num_tokens_per_iter'
        assert self.cache_prompt in ('all', 'auto'), 'invalid cache_prompt'
        assert self.cache_generation in ('all', 'auto', 'none'), 'invalid cache_generation'
        assert self.cache_checkpoint_interval > 0, 'invalid cache_checkpoint_interval'
        assert self.cache_prompt_boundary_skip >= 1, 'invalid cache_prompt_boundary_skip'
        assert self.async_ in (0, 1), 'async_ must be 0 (disabled) or 1 (enabled)'
        assert self.moe_a2a_backend in ('auto', 'default', 'deepep'), 'invalid moe_a2a_backend'


@record_init
@dataclass
class PytorchEngineConfig:
    """PyTorch engine config (0.18.0 fields and checks)."""

    dtype: str = 'auto'
    tp: int = 1
    dp: int = 1
    dp_rank: int = 0
    ep: int = 1
    session_len: int = None
    max_batch_size: int = None
    attn_tp_size: int = None
    mlp_tp_size: int = None
    moe_tp_size: int = None
    cache_max_entry_count: float = 0.8
    prefill_interval: int = 16
    block_size: int = 64
    kernel_block_size: int = -1
    num_cpu_blocks: int = 0
    num_gpu_blocks: int = 0
    adapters: dict[str, str] = None
    max_prefill_token_num: int = 8192
    cudagraph_capture_batch_sizes: list[int] | None = None
    thread_safe: bool = False
    enable_prefix_caching: bool = False
    prefix_cache_state_budget: int = 0
    prefix_cache_decode_state_interval: int = 0
    device_type: str = 'cuda'
    eager_mode: bool = False
    custom_module_map: dict[str, str] = None
    download_dir: str = None
    revision: str = None
    quant_policy: QuantPolicy = QuantPolicy.NONE
    distributed_executor_backend: str = None
    empty_init: bool = False
    enable_microbatch: bool = False
    enable_eplb: bool = False
    enable_mp_engine: bool = False
    mp_engine_backend: str = 'mp'
    model_format: str = None
    enable_metrics: bool = True
    hf_overrides: dict[str, Any] | None = None
    language_model_only: bool = False
    logprobs_mode: str = None
    enable_return_routed_experts: bool = False
    enable_transfer_obj_ref: bool = False
    dllm_block_length: int = None
    dllm_unmasking_strategy: str = 'low_confidence_dynamic'
    dllm_denoising_steps: int = None
    dllm_confidence_threshold: float = 0.85
    role: EngineRole = EngineRole.Hybrid
    migration_backend: MigrationBackend = MigrationBackend.DLSlime
    kv_transfer_config: KVTransferConfig | dict[str, Any] | None = None
    piecewise_cudagraph_max_tokens: int | None = None

    def __post_init__(self):
        """Check input validation (verbatim 0.18.0 checks)."""
        if self.kernel_block_size == -1:
            self.kernel_block_size = self.block_size
        assert self.dtype in ['auto', 'float16', 'bfloat16']
        assert self.tp >= 1, 'invalid tp'
        assert self.dp >= 1, 'invalid dp'
        assert self.ep >= 1, 'invalid ep'
        assert 0 < self.cache_max_entry_count < 1, 'invalid cache_max_entry_count'
        assert self.num_cpu_blocks >= 0, 'invalid num_cpu_blocks'
        assert self.max_prefill_token_num >= 0, 'invalid max_prefill_token_num'
        assert (self.piecewise_cudagraph_max_tokens is None
                or self.piecewise_cudagraph_max_tokens > 0), 'invalid piecewise_cudagraph_max_tokens'
        assert self.num_gpu_blocks >= 0, 'invalid num_gpu_blocks'
        assert self.prefix_cache_state_budget >= 0, 'invalid prefix_cache_state_budget'
        assert self.prefix_cache_decode_state_interval >= 0, 'invalid prefix_cache_decode_state_interval'
        try:
            self.quant_policy = QuantPolicy(self.quant_policy)
        except ValueError as e:
            raise ValueError(f'invalid quant_policy: {self.quant_policy}') from e
        assert self.device_type in ['cuda', 'ascend', 'maca', 'camb'], (f'invalid device_type: {self.device_type}')
        assert self.kernel_block_size >= 16 and \
               (self.kernel_block_size & (self.kernel_block_size - 1)) == 0, \
               f'kernel_block_size must be >= 16 and a power of 2, but got {self.kernel_block_size}'
        assert self.block_size >= self.kernel_block_size and \
               self.block_size % self.kernel_block_size == 0, \
               (f'block_size must be >= kernel_block_size and an integer multiple '
                f'of kernel_block_size, but got block_size {self.block_size} '
                f'and kernel_block_size {self.kernel_block_size}')
        if self.prefix_cache_decode_state_interval > 0:
            assert self.prefix_cache_decode_state_interval % self.block_size == 0, (
                'prefix_cache_decode_state_interval must be a multiple of block_size')
        if self.quant_policy > 0 and self.device_type not in ['cuda', 'ascend']:
            assert False, 'kv cache quantization only works for CUDA and ASCEND.'
        if self.device_type == 'camb' and self.block_size != 16:
            self.block_size = 16
            self.kernel_block_size = 16
        if isinstance(self.kv_transfer_config, dict):
            self.kv_transfer_config = KVTransferConfig(**self.kv_transfer_config)
        elif self.kv_transfer_config is not None and not isinstance(self.kv_transfer_config, KVTransferConfig):
            raise TypeError('kv_transfer_config must be a KVTransferConfig, dict, or None')


class ResponseType(enum.Enum):
    """Engine response status (real members)."""

    SUCCESS = enum.auto()
    FINISH = enum.auto()
    ENGINE_STOP_ERROR = enum.auto()
    SESSION_REPEAT = enum.auto()
    SESSION_NOT_EXIST = enum.auto()
    HANDLER_NOT_EXIST = enum.auto()
    INPUT_LENGTH_ERROR = enum.auto()
    INTERNAL_ENGINE_ERROR = enum.auto()
    CANCEL = enum.auto()
    PREFIX_CACHE_CONFLICT = enum.auto()
    NO_QUEUE = enum.auto()
    NOT_SUPPORTED = enum.auto()
    OUT_OF_MEMORY = enum.auto()


@dataclass
class Response:
    """What ``Pipeline.infer`` returns and ``stream_infer`` yields (0.18.0 fields).

    From ``stream_infer`` ``text`` is the delta since the previous Response; the last one carries
    ``finish_reason`` ('stop' | 'length' | 'abort' | 'error') and, normally, empty ``text``.
    """

    text: str
    generate_token_len: int
    input_token_len: int
    finish_reason: Literal['stop', 'length', 'error', 'abort'] | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict[int, float]] = None
    logits: torch.Tensor = None  # noqa: F821 (annotation text as in the real source)
    last_hidden_state: torch.Tensor = None  # noqa: F821
    index: int = 0
    routed_experts: Any = None
    cached_tokens: int = 0
    error_code: str | None = None
    error_message: str | None = None

    def extend(self, other: Response) -> Response:
        """Merge ``other`` into this one, as the real ``Response.extend`` (used by ``infer``)."""
        self.text += other.text
        self.generate_token_len = other.generate_token_len
        self.input_token_len = other.input_token_len
        self.finish_reason = other.finish_reason
        self.index = other.index
        if other.token_ids:
            self.token_ids += other.token_ids
        if other.logprobs is not None:
            self.logprobs = self.logprobs or []
            self.logprobs += other.logprobs
        self.routed_experts = other.routed_experts
        self.error_code = other.error_code
        self.error_message = other.error_message
        return self


@dataclass
class EngineOutput:
    """Engine output from the (stand-in) engine: status and the token ids new in this step."""

    status: ResponseType
    token_ids: list[int]


@record_init
@dataclass
class VisionConfig:
    """Vision model configs (0.18.0 fields)."""

    max_batch_size: int = 1
    thread_safe: bool = False
