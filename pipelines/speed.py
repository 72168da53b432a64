"""Compute-side speed options of a loaded bundle: torch.compile of the transformer's repeated block, and the
attention kernel every transformer attention runs (diffusers' attention dispatcher).

- ``compile``: ``off`` (eager, the default) or ``regional``: each ``LTX2VideoTransformerBlock`` (the model's
  ``_repeated_blocks``) compiled by inductor, the way diffusers' ``compile_repeated_blocks`` does it. All
  blocks share one compiled graph per call signature (prompt/STG/isolated passes, LoRA on or off, a second
  size makes it dynamic), so the first request of each kind pays the compile once. A whole-model compile is
  not offered: it unrolls every block into one graph (many times the compile time for little more speed).
- ``attention``: ``auto`` (what diffusers picks by default: torch's scaled_dot_product_attention, which
  chooses its own kernel), ``sdpa`` (the same, named), ``cudnn`` (torch's cuDNN attention kernel), ``flash4``
  (FlashAttention 4 from the ``flash-attn-4`` package, Hopper and newer) or ``sage`` (SageAttention's 8-bit
  attention: lossy). Only the transformers' attentions change; the text connectors keep the default.

Everything here is applied in place, once, after the bundle is placed; ``apply_speed_options`` returns an
undo for the benchmark, which times several options on one loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

COMPILE_MODES = ("off", "regional")
ATTENTION_CHOICES = ("auto", "sdpa", "cudnn", "flash4", "sage")
# The user's name -> diffusers' AttentionBackendName value (None: leave diffusers' default alone).
_DIFFUSERS_BACKENDS: dict[str, str | None] = {
    "auto": None,
    "sdpa": "native",
    "cudnn": "_native_cudnn",
    "flash4": "flash_4_hub",  # diffusers' FlashAttention 4 backend, fed the local package's kernel (below)
    "sage": "sage",
}
# Exact attention (the same softmax, other kernels: float rounding apart) vs approximate.
LOSSY_ATTENTION = ("sage",)
# Enough for every call signature of a request's passes at a fixed and then dynamic size (measured: 5 on the
# tiny model's two-stage recipe); past the limit dynamo would silently fall back to eager.
_RECOMPILE_LIMIT = 32


class SpeedOptionUnavailable(RuntimeError):
    """A requested option cannot run here: says what to install or which device it needs."""


@dataclass(frozen=True)
class SpeedOptions:
    compile: str = "off"
    attention: str = "auto"
    decode_chunk_frames: int = 48  # frames per chunk of the video decode; 0: the whole clip in one pass
    cache_negative_prompt: bool = True  # keep the negative prompt's contexts between requests

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile: must be one of {', '.join(COMPILE_MODES)}; got {self.compile!r}")
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention: must be one of {', '.join(ATTENTION_CHOICES)}; got {self.attention!r}")
        if self.decode_chunk_frames < 0:
            raise ValueError(f"decode_chunk_frames: must be >= 0 (0: one pass); got {self.decode_chunk_frames}")

    def summary(self) -> str:
        decode = "one pass" if self.decode_chunk_frames == 0 else f"{self.decode_chunk_frames}-frame chunks"
        cache = "cached" if self.cache_negative_prompt else "encoded every request"
        return f"compile {self.compile}, attention {self.attention}, video decode in {decode}, negative prompt {cache}"


# What each kernel other than torch's default needs, as a user would install it.
_ATTENTION_NEEDS = {
    "cudnn": "a CUDA GPU (torch's own cuDNN attention)",
    "flash4": "a Hopper or newer CUDA GPU and the flash-attn-4 package (pip install flash-attn-4)",
    "sage": "a CUDA GPU and the sageattention package >= 2.1.1",
}


def check_speed_options(options: SpeedOptions, device: torch.device) -> None:
    """Raise SpeedOptionUnavailable before any weights are loaded when an option cannot run on ``device``."""
    if options.attention in ("auto", "sdpa"):
        return
    if device.type != "cuda":
        needs = _ATTENTION_NEEDS[options.attention]
        raise SpeedOptionUnavailable(f"attention {options.attention}: needs {needs}; this worker runs on {device}")
    if options.attention == "cudnn" and not torch.backends.cudnn.is_available():
        raise SpeedOptionUnavailable("attention cudnn: this torch build has no cuDNN")
    if options.attention == "flash4":
        _flash4_kernel(device)
    if options.attention == "sage":
        _check_sage()


def _flash4_kernel(device: torch.device) -> Callable:
    if torch.cuda.get_device_capability(device) < (9, 0):
        name = torch.cuda.get_device_name(device)
        raise SpeedOptionUnavailable(f"attention flash4: FlashAttention 4 needs a Hopper or newer GPU; this is {name}")
    try:
        from flash_attn.cute import flash_attn_func
    except ImportError as error:
        raise SpeedOptionUnavailable(
            f"attention flash4: install the flash-attn-4 package (pip install flash-attn-4): {error}"
        ) from None
    return flash_attn_func


def _check_sage() -> None:
    from diffusers.models import attention_dispatch

    if not attention_dispatch._CAN_USE_SAGE_ATTN:
        raise SpeedOptionUnavailable(
            f"attention sage: needs the sageattention package >= {attention_dispatch._REQUIRED_SAGE_VERSION} "
            "(PyPI's sageattention 1.x is too old: build SageAttention 2 from its source)"
        )


def bundle_transformers(bundle) -> list[torch.nn.Module]:
    """Every distinct LTX-2 transformer the bundle may run: the pipeline's, the distilled checkpoint's, and
    any other kept on the bundle (e.g. a stage-2 transformer with the LoRA merged in)."""
    candidates: list[Any] = [bundle.pipe.transformer, *vars(bundle).values()]
    found: dict[int, torch.nn.Module] = {}
    for candidate in candidates:
        if isinstance(candidate, torch.nn.Module) and hasattr(candidate, "transformer_blocks"):
            found.setdefault(id(candidate), candidate)
    return list(found.values())


def apply_speed_options(bundle, options: SpeedOptions, device: torch.device, offload_mode: str = "none") -> Callable:
    """Compile and/or switch the attention kernel of every transformer in ``bundle``; returns the undo."""
    check_speed_options(options, device)
    undos: list[Callable[[], None]] = []
    for transformer in bundle_transformers(bundle):
        undos.append(set_attention(transformer, options.attention, device))
        if options.compile == "regional":
            undos.append(compile_repeated_blocks(transformer, offload_mode))

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


def set_attention(transformer: torch.nn.Module, attention: str, device: torch.device) -> Callable[[], None]:
    """Point every attention processor of ``transformer`` at ``attention``'s kernel; returns the undo.

    Per processor, as diffusers' ``set_attention_backend`` does, but without its two side effects: it also
    makes the backend the process-wide default (the text connectors, whose attention carries a mask that
    FlashAttention 4 refuses, would follow) and, for flash4, it fetches the kernel from the Hub.
    """
    backend = _DIFFUSERS_BACKENDS[attention]
    if backend is None:
        return lambda: None
    from diffusers.models.attention_dispatch import _HUB_KERNELS_REGISTRY, AttentionBackendName

    name = AttentionBackendName(backend)
    if attention == "flash4":
        # The flash-attn-4 package's kernel is the one diffusers' Hub backend would download.
        _HUB_KERNELS_REGISTRY[name].kernel_fn = _flash4_kernel(device)
    previous = {}
    for processor in attention_processors(transformer):
        previous[processor] = processor._attention_backend
        processor._attention_backend = name

    def undo() -> None:
        for processor, old in previous.items():
            processor._attention_backend = old

    return undo


def attention_processors(transformer: torch.nn.Module) -> list[Any]:
    processors = (getattr(module, "processor", None) for module in transformer.modules())
    return [p for p in processors if p is not None and hasattr(p, "_attention_backend")]


def compile_repeated_blocks(transformer: torch.nn.Module, offload_mode: str = "none") -> Callable[[], None]:
    """torch.compile each of the transformer's repeated blocks (inductor); returns the undo."""
    if offload_mode in ("group", "sequential"):
        # Group offloading moves each block's weights in hooks that run inside the block's call.
        raise SpeedOptionUnavailable(
            f"compile regional: not with offload {offload_mode} (use none, text-encoder or model)"
        )
    names = set(getattr(transformer, "_repeated_blocks", ()))
    blocks = [module for module in transformer.modules() if type(module).__name__ in names]
    if not blocks:
        raise SpeedOptionUnavailable(f"compile regional: {type(transformer).__name__} declares no repeated block")
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
    for block in blocks:
        block.compile()

    def undo() -> None:
        for block in blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()

    return undo


class NegativePromptCache:
    """The negative prompt's text contexts (after Gemma and the connectors), kept between requests.

    Most requests send the same negative prompt (the API's default), and encoding it is a full Gemma pass
    over ``max_sequence_length`` tokens. The encoder is deterministic, so a cached entry is exactly what
    encoding again would give. Keyed by everything the result depends on; a few entries (about 12 MiB each
    for LTX-2 19B in bf16), least recently used dropped first.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get_or_encode(
        self, key: tuple, encode: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = encode()
        self._entries[key] = entry  # (re)inserted last: the most recently used
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]
        return entry

    def __len__(self) -> int:
        return len(self._entries)
