"""Where the model's weights live during generation: all on the GPU, or offloaded to CPU memory.

``plan_offload`` is pure arithmetic on byte counts (unit-tested without a GPU); ``apply_offload`` places a
loaded bundle as a plan says. ``auto`` picks the fastest mode that fits the free VRAM: everything
resident (80 GB cards); everything but the text encoder, which visits the GPU only to encode the prompt;
model offload, where the text encoder and the transformer(s) take turns on the GPU and the small
components stay (48 GB cards with fp8); or block-level group offload with VAE tiling (24 GB). A mode
that cannot fit is refused at start-up with the numbers, instead of failing mid-job.

What a mode needs is the weights on the GPU at its worst moment plus the activations of the largest
request it is planned for (``activation_budget``: the full-resolution denoising stage, with the stage-2
LoRA's temporaries when it runs as an adapter, or the video decode, whichever is larger; plus a
workspace margin), computed from that request's token counts (pipelines/ltx2_19b.py).

Offloaded weights wait in pinned CPU memory and are never copied back: a component leaving the GPU just
drops its GPU copy (the weights never change), and one arriving is copied from pinned memory, which is
several times faster than from pageable memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

OFFLOAD_MODES = ("auto", "none", "text-encoder", "model", "group", "sequential")
GIB = 1024**3
# Group offload keeps one transformer block at a time resident; below this nothing works.
MIN_GROUP_OFFLOAD_BYTES = 2 * GIB
# Gemma encoding one prompt (1024 tokens, every layer's hidden states kept for the connectors).
TEXT_ENCODE_BYTES = 2 * GIB
# Kernel workspaces (cuBLAS, attention) and the caching allocator's slack, on top of live tensors.
WORKSPACE_BYTES = 1 * GIB

# Live activation memory of one transformer forward, in values of the model's width per video token (the
# same per audio token at the audio width): measured on the CPU at LTX-2 19B's full width (one block, bf16,
# 512 to 1,024 video tokens: 82.0 bytes per token per unit of width, so 41 values, rounded up to 42 for a
# margin) by tracking every tensor diffusers' eager LTX2VideoTransformer3DModel allocates and frees
# (tests/integration/test_memory_options.py measures it again). The largest terms are the per-token AdaLN
# tables (every token has its own timestep: 6 + 4 widths, twice), the feed-forward's 4-width
# intermediate and its GELU, and the float32 RoPE tables.
TRANSFORMER_VALUES_PER_TOKEN_WIDTH = 42
# With the distilled LoRA as a peft adapter: its B output beside the base output of the widest matrix
# (the feed-forward's 4-width input projection): measured 8 more bytes per token per unit of width.
LORA_ADAPTER_VALUES_PER_TOKEN_WIDTH = 4
# fp8 compute: each matmul's input is also held as e4m3 (1 byte) while it runs; the widest is 4 widths.
FP8_COMPUTE_BYTES_PER_TOKEN_WIDTH = 4
# The chunked video decode (pipelines/decode.py), per output pixel of one frame, in values: the decoder
# head's output for the whole clip (half the frames at an eighth of the resolution, 256 channels: 2.5
# per output frame), and the last up-block's ~5.5 full-width 128-channel tensors at a quarter of the
# resolution (44 per frame of the window being decoded). Measured on the CPU with LTX-2's video VAE
# (bf16): within 10 % of these at 64 to 128 px.
DECODE_HEAD_VALUES_PER_PIXEL_FRAME = 2.5
DECODE_TAIL_VALUES_PER_PIXEL_FRAME = 44
# Output frames of context decoded on each side of a chunk (13 head frames, upscaled 2x in time).
DECODE_HALO_FRAMES = 26
DEFAULT_DECODE_CHUNK_FRAMES = 48


class InsufficientGpuMemory(Exception):
    """The chosen offload mode cannot fit on this GPU: a start-up error, with the numbers."""


@dataclass(frozen=True)
class OffloadPlan:
    mode: str  # none | text-encoder | model | group | sequential
    vae_tiling: bool
    reason: str


@dataclass(frozen=True)
class RequestSize:
    """The largest request a worker is planned for (the API's default payload unless told otherwise)."""

    width: int = 720
    height: int = 1280
    num_frames: int = 181
    fps: float = 24.0

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.num_frames}"


DEFAULT_PLAN_REQUEST = RequestSize()


@dataclass(frozen=True)
class ActivationBudget:
    """Bytes of activations a request needs on top of the weights, and where the figure comes from."""

    denoise_bytes: int  # the full-resolution transformer forward (+ LoRA temporaries / fp8 copies)
    decode_bytes: int  # the video decode
    workspace_bytes: int = WORKSPACE_BYTES
    detail: str = ""

    @property
    def total(self) -> int:
        # The transformer is done before the decode starts: the two peaks never add up.
        return max(self.denoise_bytes, self.decode_bytes) + self.workspace_bytes

    def describe(self) -> str:
        return (
            f"activations ~{_gib(self.total)} ({self.detail}: denoising {_gib(self.denoise_bytes)}, "
            f"decode {_gib(self.decode_bytes)}, workspace {_gib(self.workspace_bytes)})"
        )


# The fixed headroom the planner used before it computed one: what a caller without a request size gets.
DEFAULT_ACTIVATION_BUDGET = ActivationBudget(7 * GIB, 0, WORKSPACE_BYTES, "a fixed allowance")


def activation_budget(
    transformer_config: dict[str, Any],
    request: RequestSize = DEFAULT_PLAN_REQUEST,
    *,
    recipe: str = "two-stage",
    dtype_bytes: int = 2,
    lora_adapter: bool = True,
    fp8_compute: bool = False,
    decode_chunk_frames: int | None = DEFAULT_DECODE_CHUNK_FRAMES,
) -> ActivationBudget:
    """What ``request`` needs beyond the weights under ``recipe``. Its largest transformer forward runs
    at full resolution: stage 2 of two-stage and distilled (with the distilled LoRA's temporaries when
    ``lora_adapter``), every step of one-stage; stage 1 runs a quarter of those tokens. The decode runs
    ``decode_chunk_frames`` frames at a time (None: all at once)."""
    from .generate import plan_generation_size
    from .ltx2_19b import audio_tokens, video_tokens

    temporal, spatial, _ = transformer_config["vae_scale_factors"]
    two_stage = recipe != "one-stage"
    size = plan_generation_size(
        request.width,
        request.height,
        request.num_frames,
        spatial_multiple=spatial * (2 if two_stage else 1),
        temporal_ratio=temporal,
    )
    video = video_tokens(size.width, size.height, size.num_frames, transformer_config)
    audio = audio_tokens(size.num_frames, request.fps, transformer_config)
    width = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    audio_width = transformer_config["audio_num_attention_heads"] * transformer_config["audio_attention_head_dim"]
    lora_adapter = lora_adapter and two_stage  # one-stage never switches the LoRA on
    values = TRANSFORMER_VALUES_PER_TOKEN_WIDTH + (LORA_ADAPTER_VALUES_PER_TOKEN_WIDTH if lora_adapter else 0)
    per_width = values * dtype_bytes + (FP8_COMPUTE_BYTES_PER_TOKEN_WIDTH if fp8_compute else 0)
    denoise = per_width * (video * width + audio * audio_width)
    frames = size.num_frames
    window = frames if decode_chunk_frames is None else min(frames, decode_chunk_frames + 2 * DECODE_HALO_FRAMES)
    per_pixel = DECODE_HEAD_VALUES_PER_PIXEL_FRAME * frames + DECODE_TAIL_VALUES_PER_PIXEL_FRAME * window
    decode = int(per_pixel * dtype_bytes * size.width * size.height)
    stage = "one-stage" if not two_stage else "stage 2"
    lora = " with the LoRA adapter" if lora_adapter else ""
    generated = f"{size.width}x{size.height}x{frames}"
    detail = f"{recipe} at {request} ({generated} generated): {stage} {video:,} video tokens{lora}"
    return ActivationBudget(int(denoise), decode, WORKSPACE_BYTES, detail)


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / GIB:.1f} GiB"


# Components that take turns on the GPU under model offload; every other one stays there.
TURN_TAKERS = ("text_encoder", "transformer", "stage2_transformer")


def plan_offload(
    requested: str,
    *,
    on_cuda: bool,
    free_bytes: int,
    component_bytes: dict[str, int],
    activations: ActivationBudget = DEFAULT_ACTIVATION_BUDGET,
) -> OffloadPlan:
    if requested not in OFFLOAD_MODES:
        raise ValueError(f"offload: must be one of {', '.join(OFFLOAD_MODES)}; got {requested!r}")
    if not on_cuda:
        if requested == "auto":
            return OffloadPlan("none", vae_tiling=False, reason="no CUDA device: the weights are used where they are")
        return OffloadPlan(requested, vae_tiling=False, reason=f"--offload {requested}, with the CPU on both ends")
    needs = bytes_needed(component_bytes, activations.total)
    free = f"{_gib(free_bytes)} free"
    budget = activations.describe()
    if requested == "auto":
        for mode in ("none", "text-encoder", "model"):
            if free_bytes >= needs[mode]:
                reason = f"{_WHY[mode]}: needs ~{_gib(needs[mode])}, {free}; {budget}"
                return OffloadPlan(mode, vae_tiling=False, reason=reason)
        requested = "group"
        requested_reason = f"{_WHY['group']}: model offload would need ~{_gib(needs['model'])}, {free}; {budget}"
    else:
        requested_reason = f"--offload {requested}: needs ~{_gib(needs[requested])}, {free}; {budget}"
    if free_bytes < needs[requested]:
        hint = {"none": "--offload text-encoder, model or group", "text-encoder": "--offload model or group"}.get(
            requested, "--offload group or --fp8"
        )
        if requested in ("group", "sequential"):
            hint = "a larger GPU"
        raise InsufficientGpuMemory(
            f"--offload {requested} needs ~{_gib(needs[requested])} of GPU memory but only {free}; use {hint} "
            f"({budget})"
        )
    tiling = requested in ("group", "sequential")
    return OffloadPlan(requested, vae_tiling=tiling, reason=requested_reason)


_WHY = {
    "none": "everything resident",
    "text-encoder": "everything resident but the text encoder, which visits the GPU for each prompt",
    "model": "model offload (text encoder and transformer take turns on the GPU)",
    "group": "group offload + VAE tiling",
}


def bytes_needed(component_bytes: dict[str, int], activations: int) -> dict[str, int]:
    """Peak GPU bytes of each mode: the weights resident at the worst moment plus activations."""
    total = sum(component_bytes.values())
    text_encoder = component_bytes.get("text_encoder", 0)
    transformers = [component_bytes.get(name, 0) for name in TURN_TAKERS[1:]]
    staying = total - text_encoder - sum(transformers)
    # While Gemma encodes the prompt the transformers wait (resident or not) and need no activations.
    text_encoder_turn = text_encoder + TEXT_ENCODE_BYTES
    group = MIN_GROUP_OFFLOAD_BYTES + activations // 4
    return {
        "none": total + activations,
        "text-encoder": total - text_encoder + max(text_encoder_turn, activations),
        "model": staying + max(text_encoder_turn, max(transformers) + activations),
        "group": group,
        "sequential": group,
    }


def module_bytes(module, device_type: str | None = None) -> int:
    """Bytes of a module's parameters and buffers (only those on ``device_type``, when given)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if device_type is None or t.device.type == device_type)


class HostCopy:
    """A module whose weights wait in CPU memory (pinned when the GPU is CUDA) and visit ``device``:
    ``onload`` copies them over, ``offload`` puts the host tensors back in their place and lets the GPU
    copies go, since the weights never change. Tied weights stay tied (one copy, one Parameter)."""

    def __init__(self, module, device) -> None:
        import torch

        self.module = module
        self.device = torch.device(device)
        pin = self.device.type == "cuda"
        # (owning module, name, is it a parameter, host tensor), for every parameter and buffer slot.
        self.slots: list[tuple[Any, str, bool, Any]] = []
        hosted: dict[int, Any] = {}  # id of the original tensor -> its host copy
        for owner in module.modules():
            for table, is_parameter in ((owner._parameters, True), (owner._buffers, False)):
                for name, tensor in list(table.items()):
                    if tensor is None:
                        continue
                    if id(tensor) not in hosted:
                        host = tensor.detach().to("cpu")
                        hosted[id(tensor)] = host.pin_memory() if pin else host
                    self.slots.append((owner, name, is_parameter, hosted[id(tensor)]))
        self._fill(lambda host: host)  # one tensor at a time, so the originals are freed as it goes
        self.on_device = self.device.type == "cpu"

    def _fill(self, place) -> None:
        import torch

        placed: dict[int, Any] = {}  # id of a host tensor -> what its slots get (tied slots: the same object)
        for owner, name, is_parameter, host in self.slots:
            if id(host) not in placed:
                tensor = place(host)
                placed[id(host)] = torch.nn.Parameter(tensor, requires_grad=False) if is_parameter else tensor
            (owner._parameters if is_parameter else owner._buffers)[name] = placed[id(host)]

    def onload(self) -> None:
        if not self.on_device:
            self._fill(lambda host: host.to(self.device, non_blocking=True))
            self.on_device = True

    def offload(self) -> None:
        if self.on_device and self.device.type != "cpu":
            self._fill(lambda host: host)
            self.on_device = False


def take_turns(copies: list[HostCopy]) -> list[Any]:
    """Before any of these modules runs, the others leave the GPU and it arrives (if not there already).
    Returns the hooks' handles."""

    def arrive(arriving: HostCopy):
        def pre_forward(module, args):
            for other in copies:
                if other is not arriving:
                    other.offload()
            arriving.onload()

        return pre_forward

    return [copy.module.register_forward_pre_hook(arrive(copy)) for copy in copies]


def host_turns(bundle, mode: str, device) -> Callable[[], None]:
    """``text-encoder``: the text encoder waits in host memory, visits the GPU to encode each prompt and leaves
    right after (bundle.after_prompt). ``model``: it and the transformer(s) take turns. Returns the undo:
    every one of them back on ``device`` for good (scripts/bench_gpu.py compares modes on one loaded model)."""
    from .loader import stage2_transformer

    pipe = bundle.pipe
    modules = [pipe.text_encoder]
    if mode == "model":
        modules += [pipe.transformer, *[m for m in (stage2_transformer(bundle),) if m is not None]]
    copies = [HostCopy(module, device) for module in modules]
    handles = take_turns(copies)
    after_prompt = bundle.after_prompt
    if mode == "text-encoder":
        bundle.after_prompt = copies[0].offload

    def undo() -> None:
        for handle in handles:
            handle.remove()
        for copy in copies:
            copy.onload()
        bundle.after_prompt = after_prompt

    return undo


def _place_resident(bundle, device, names: tuple[str, ...]) -> None:
    for name in names:
        getattr(bundle.pipe, name).to(device)
    # 0.5B params: cheaper to keep resident than to move for every request. LTX-2.5 has none.
    if bundle.latent_upsampler is not None:
        bundle.latent_upsampler.to(device)


_SMALL_COMPONENTS = ("connectors", "vae", "audio_vae", "vocoder")


def apply_offload(bundle, plan: OffloadPlan, device) -> None:
    """Place the bundle's weights as the plan says. Runs once, at load."""
    import torch

    from .loader import stage2_transformer

    pipe = bundle.pipe
    device = torch.device(device)
    stage2: Any = stage2_transformer(bundle)
    if plan.mode == "none":
        pipe.to(device)
        _place_resident(bundle, device, ())
        if stage2 is not None:
            stage2.to(device)
    elif plan.mode == "text-encoder":
        _place_resident(bundle, device, ("transformer", *_SMALL_COMPONENTS))
        if stage2 is not None:
            stage2.to(device)
        host_turns(bundle, "text-encoder", device)
    elif plan.mode == "model":
        _place_resident(bundle, device, _SMALL_COMPONENTS)
        host_turns(bundle, "model", device)
    elif plan.mode in ("group", "sequential"):
        # "sequential" is leaf-level group offloading: the same memory as accelerate's sequential CPU
        # offload (one layer on the GPU at a time) but with transfers overlapped on a CUDA stream; and
        # accelerate's own sequential hooks break Gemma-3's scaled embedding under transformers 5.
        level: dict[str, dict[str, Any]] = {
            "group": dict(offload_type="block_level", num_blocks_per_group=1),
            "sequential": dict(offload_type="leaf_level"),
        }
        options = dict(onload_device=device, offload_device=torch.device("cpu"), use_stream=device.type == "cuda")
        pipe.enable_group_offload(**options, **level[plan.mode])
        if stage2 is not None:
            stage2.enable_group_offload(**options, **level[plan.mode])
        _place_resident(bundle, device, ())
    else:
        raise ValueError(f"unknown offload mode {plan.mode!r}")
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
