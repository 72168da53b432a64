"""The LTX-2 generations this server runs, one row each, and how a weights folder says which one it holds.

Torch-free (stdlib plus pipelines.guidance and pipelines.ltx25_layout, themselves torch-free): the API process
reads this table to validate ``--model``, resolve ``--model auto`` and name the generation in ``/ready`` before
any worker loads torch.

Each row is what Lightricks' own code or model card gives for that generation; the comment beside a value
says where it comes from. "ltx-pipelines" below is ltx-pipelines 1.0.0 (``ltx_pipelines/utils/constants.py``
unless another file is named), "ltx-core" is ltx-core 1.0.0. The tiny rows are random test models of a
generation's architecture (built in code, pipelines/tiny.py, pipelines/tiny23.py and pipelines/tiny25.py): they
take that generation's sampling rules and only differ where a test model's speed asks for it. LTX-2.5's row takes
its values from diffusers 0.42.1's LTX-2.5 pipeline, ltx-pipelines 1.0.0 having no LTX-2.5.

A generation is recognised from its weights folder (:func:`detect_generation`): first by the
``model_version`` entry that Lightricks writes into the metadata of its single-file checkpoints (the entry
ltx-pipelines' ``detect_params`` reads to pick ``LTX_2_3_PARAMS``), then by the diffusers ``model_index.json``
that the diffusers-format LTX-2 19B repository carries.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

from .guidance import POLICIES, GuidancePolicy, ModalityGuidance
from .ltx25_layout import is_ltx25_folder

# ltx-pipelines DEFAULT_NEGATIVE_PROMPT: the one negative prompt its CLI uses for every version. Requests
# bring their own (the Segmind contract's default applies when they send none; docs/fidelity.md).
LIGHTRICKS_NEGATIVE_PROMPT = (
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, "
    "grainy texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, "
    "deformed facial features, asymmetrical face, missing facial features, extra limbs, disfigured hands, "
    "wrong hand count, artifacts around text, inconsistent perspective, camera shake, incorrect depth of "
    "field, background too sharp, background clutter, distracting reflections, harsh shadows, inconsistent "
    "lighting direction, color banding, cartoonish rendering, 3D CGI look, unrealistic materials, uncanny "
    "valley effect, incorrect ethnicity, wrong gender, exaggerated expressions, wrong gaze direction, "
    "mismatched lip sync, silent or muted audio, distorted voice, robotic voice, echo, background noise, "
    "off-sync audio, incorrect dialogue, added dialogue, repetitive speech, jittery movement, awkward "
    "pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted camera, flat lighting, "
    "inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)

ALL_RECIPES = ("two-stage", "one-stage", "distilled")

# LTX_2_3_PARAMS: LTX_2_PARAMS with STG moved from block 29 to block 28 (and 30 steps, below); every other
# scale unchanged: video cfg 3, stg 1, modality 3, rescale 0.7; audio cfg 7, stg 1, modality 3, rescale 0.7.
# ltx-core's transformer always modulates each modality's cross-attention by the other's sigma.
_LTX_2_3_STG_BLOCKS = (28,)
LTX_2_3_POLICY = GuidancePolicy(
    name="ltx-pipelines",
    video=ModalityGuidance(cfg=3.0, stg=1.0, stg_blocks=_LTX_2_3_STG_BLOCKS, modality=3.0, rescale=0.7),
    audio=ModalityGuidance(cfg=7.0, stg=1.0, stg_blocks=_LTX_2_3_STG_BLOCKS, modality=3.0, rescale=0.7),
    cross_timestep=True,
)


REQUEST_FEATURES = ("keyframes", "loras", "enhance_prompt")


@dataclass(frozen=True)
class Generation:
    """One generation's defaults. Every value is overridable where the server has a flag for it."""

    name: str  # as --model spells it
    title: str  # as people call it
    version: str  # Lightricks' version number
    # The start of the checkpoint metadata's ``model_version`` that marks this generation; "" for none (a
    # generation recognised by its folder layout instead).
    model_version_prefix: str
    parameters: str  # the transformer's size, as Lightricks names the model
    num_inference_steps: int  # guided steps of one-stage and of two-stage's first stage
    # The --guidance choices, the default first. Each scales video CFG by the request's guidance_scale.
    guidance_policies: tuple[GuidancePolicy, ...]
    negative_prompt: str  # Lightricks' own default (reference only: requests carry theirs)
    frame_multiple: int  # frames are multiple * k + 1 (the video VAE's temporal compression)
    size_multiple: int  # width and height, one-stage (the VAE's spatial compression)
    two_stage_size_multiple: int  # two-stage recipes: stage 1 runs at half size
    max_seconds: float  # the longest clip the model's temporal positions are laid out for
    x264_preset: str
    x264_crf: int
    max_sequence_length: int  # prompt tokens given to the text encoder
    audio_sample_rate: int  # what the vocoder writes
    duration_head: bool  # whether the model predicts a clip's duration itself
    recipes: tuple[str, ...] = ALL_RECIPES
    # "diffusers-folder", "single-file" or "diffusers-components" (LTX-2.5); "" for a model built in code
    weights_layout: str = ""
    hub_repo: str = ""  # where its weights are published
    tiny_of: str = ""  # a tiny test model: the generation whose architecture it has
    notes: tuple[str, ...] = field(default=())  # what differs from the generation before (docs/generations.md)
    # The request fields beyond Segmind's that this generation's pipeline takes (others are a 400 naming them).
    request_features: tuple[str, ...] = REQUEST_FEATURES

    @property
    def is_tiny(self) -> bool:
        return bool(self.tiny_of)

    @property
    def guidance_names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.guidance_policies)

    @property
    def default_guidance(self) -> str:
        return self.guidance_policies[0].name

    def guidance_policy(self, name: str) -> GuidancePolicy:
        for policy in self.guidance_policies:
            if policy.name == name:
                return policy
        raise ValueError(f"guidance: {self.name} offers {', '.join(self.guidance_names)}; got {name!r}")

    def frames_for(self, num_frames: int) -> int:
        """The frame count the model generates for a request of ``num_frames`` (the next multiple * k + 1)."""
        return -(-max(num_frames - 1, 0) // self.frame_multiple) * self.frame_multiple + 1


LTX_2_19B = Generation(
    name="ltx-2-19b",
    title="LTX-2",
    version="2.0",
    # ltx-pipelines' detect_params gives LTX_2_PARAMS to every checkpoint whose model_version does not start
    # with "2.3"; the diffusers-format repository this row loads carries no such metadata at all.
    model_version_prefix="",
    parameters="19B",
    # LTX_2_PARAMS.num_inference_steps = 40 (PipelineParams' default).
    num_inference_steps=40,
    # LTX_2_PARAMS first (STG block 29, pipelines/guidance.py), then the January 2026 release's plain CFG 4.
    guidance_policies=(POLICIES["ltx-pipelines"], POLICIES["ltx-2.0-release"]),
    negative_prompt=LIGHTRICKS_NEGATIVE_PROMPT,
    # ltx-core VideoDecoder: F = 8 (F' - 1) + 1, H = 32 H', W = 32 W' (video_downscale_factors); the
    # ltx-pipelines CLI: "height divisible by 32", frames "8k + 1"; two-stage generates stage 1 at half size.
    frame_multiple=8,
    size_multiple=32,
    two_stage_size_multiple=64,
    # ltx-core LTXModelConfigurator: positional_embedding_max_pos [20, 2048, 2048], the first being the
    # temporal axis, whose positions are in seconds (VideoLatentTools divides frame positions by fps).
    max_seconds=20.0,
    # CRF 19 keeps the model's detail; veryfast keeps the mux of 181 frames at 720x1280 to about a second on
    # a server CPU (the server's choice: Lightricks' encode_video leaves x264 at its defaults).
    x264_preset="veryfast",
    x264_crf=19,
    # ltx-core's Gemma tokenizer pads every prompt to 1024 tokens (LTXVGemmaTokenizer max_length).
    max_sequence_length=1024,
    # diffusers scripts/convert_ltx2_to_diffusers.py get_ltx2_vocoder_config("2.0"): output_sampling_rate.
    audio_sample_rate=24000,
    duration_head=False,
    weights_layout="diffusers-folder",
    hub_repo="Lightricks/LTX-2",
)

LTX_2_3_22B = Generation(
    name="ltx-2.3-22b",
    title="LTX-2.3",
    version="2.3",
    # ltx-pipelines _LTX_2_3_MODEL_VERSION_PREFIX = "2.3" (detect_params).
    model_version_prefix="2.3",
    parameters="22B",
    # LTX_2_3_PARAMS.num_inference_steps = 30.
    num_inference_steps=30,
    guidance_policies=(LTX_2_3_POLICY,),
    negative_prompt=LIGHTRICKS_NEGATIVE_PROMPT,
    # Same VAE compression as 2.0 (diffusers' 2.3 video VAE config: spatial_compression_ratio 32,
    # temporal_compression_ratio 8), so the same multiples.
    frame_multiple=8,
    size_multiple=32,
    two_stage_size_multiple=64,
    # diffusers' 2.3 transformer config: pos_embed_max_pos 20 (seconds), as in 2.0.
    max_seconds=20.0,
    x264_preset="veryfast",
    x264_crf=19,
    max_sequence_length=1024,  # the same Gemma 3 12B and tokenizer as 2.0
    # diffusers' get_ltx2_vocoder_config("2.3"): the bandwidth extension writes 48 kHz (input 16 kHz mel).
    audio_sample_rate=48000,
    duration_head=False,
    weights_layout="single-file",
    hub_repo="Lightricks/LTX-2.3",
    notes=(
        "22B transformer with gated attention and prompt (cross-attention) AdaLN",
        "text connectors of 8 layers with per-modality projections of Gemma's hidden states",
        "rebuilt video VAE; a vocoder with bandwidth extension to 48 kHz",
        "30 steps, STG on block 28 (LTX_2_3_PARAMS)",
    ),
)

LTX_2_5 = Generation(
    name="ltx-2.5",
    title="LTX-2.5",
    version="2.5",
    # Text-to-video only beyond Segmind's slug: keyframes have no LTX-2.5 reference to match, its prompt enhancer
    # (Gemma 4) is not loaded, and the user LoRAs are loaded into LTX-2's transformer only.
    request_features=(),
    # Recognised by its folder instead (pipelines/ltx25_layout.py is_ltx25_folder): the diffusers-format
    # repository's modular_model_index.json names LTX-2.5's pipeline.
    model_version_prefix="",
    # Lightricks names its 2.5 adapters "LTX-2.5-22b-..." (e.g. LTX-2.5-22b-IC-LoRA-Pixel-Spatial-Upscaler).
    parameters="22B",
    # diffusers' LTX-2.5 pipeline (LTX25AutoBlocks): LTX2SetTimestepsStep's num_inference_steps default 30.
    num_inference_steps=30,
    # Its guiders' defaults (modular_pipelines/ltx2/denoise.py LTX2LoopDenoiser): video cfg 3, stg 1 on block
    # 28, modality 3, rescale 0.7; audio cfg 7, stg 1, modality 3, rescale 0.7; use_cross_timestep True:
    # LTX_2_3_PARAMS exactly.
    guidance_policies=(LTX_2_3_POLICY,),
    # Lightricks' CLI default for every version (diffusers' LTX-2.5 pipeline has none: `negative_prompt or ""`).
    negative_prompt=LIGHTRICKS_NEGATIVE_PROMPT,
    # The same video VAE latent space as LTX-2 (the diffusion decoder consumes it unchanged: x32, x8).
    frame_multiple=8,
    size_multiple=32,
    two_stage_size_multiple=64,
    # diffusers' LTX2DurationStep bounds a predicted duration to [1 s, 20 s] (max_seconds default 20.0).
    max_seconds=20.0,
    x264_preset="veryfast",
    x264_crf=19,
    max_sequence_length=1024,  # LTX2TextEncoderStep's max_sequence_length default
    audio_sample_rate=48000,  # LTX2VocoderWithBWE's output_sampling_rate
    # It has one (duration_head/), which predicts a clip's length from the prompt; requests carry num_frames,
    # so the server never asks it.
    duration_head=True,
    # diffusers' LTX-2.5 pipeline runs one stage and has no latent upsampler nor stage-2 LoRA among its
    # components; the video is decoded by the diffusion decoder (pipelines/ltx25.py).
    recipes=("one-stage",),
    weights_layout="diffusers-components",
    hub_repo="Lightricks/LTX-2.5-Diffusers",
    notes=(
        "Gemma 4 text encoder; one projection per modality in the connectors; a 22B transformer with "
        "per-layer (timestep-free) prompt modulation",
        "a diffusion decoder in place of the VAE decoder: neighbourhood-attention upsampling, then one "
        "pixel-space x0 step from seeded noise; at least 17 frames and 224 px generated (then cropped)",
        "a duration head (unused: requests carry num_frames) and a Gemma 4 prompt enhancer (not fetched)",
        "one stage, 30 steps, LTX_2_3_PARAMS guidance; the conditioning image at CRF 18",
    ),
)

# The tiny test models: each generation's sampling rules, on random weights small enough for a 2-core CPU.
# Two steps (the LTX-2 schedule's minimum, pipelines/schedule.py); x264 ultrafast at CRF 36: their frames are
# noise, which at CRF 23 costs seconds and ~70 MB per default request, and well under 1 MB at 36. Prompts are
# cut at 128 tokens: the tiny Gemma's attention cost grows with it and no test prompt is longer.


def _tiny_of(served: Generation, name: str, title: str) -> Generation:
    return replace(
        served,
        name=name,
        title=title,
        tiny_of=served.name,
        num_inference_steps=2,
        x264_preset="ultrafast",
        x264_crf=36,
        max_sequence_length=128,
        weights_layout="",
        hub_repo="",
        notes=(),
    )


TINY = _tiny_of(LTX_2_19B, "tiny", "tiny LTX-2 (test model)")
TINY_2_3 = _tiny_of(LTX_2_3_22B, "tiny-2.3", "tiny LTX-2.3 (test model)")
TINY_2_5 = _tiny_of(LTX_2_5, "tiny-2.5", "tiny LTX-2.5 (test model)")

GENERATIONS: dict[str, Generation] = {g.name: g for g in (LTX_2_19B, LTX_2_3_22B, LTX_2_5, TINY, TINY_2_3, TINY_2_5)}


def generation(name: str) -> Generation:
    """The row for a ``--model`` name (ValueError naming the known ones otherwise)."""
    if name not in GENERATIONS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(GENERATIONS)})")
    return GENERATIONS[name]


def model_names() -> tuple[str, ...]:
    return tuple(GENERATIONS)


# ---- recognising a weights folder ------------------------------------------------------------------------

MODEL_INDEX_FILE = "model_index.json"
# safetensors itself refuses headers over 100 MB.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def safetensors_metadata(file: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file's header ({} when it has none or is unreadable).

    Reads only the header (8-byte little-endian length, then that many bytes of JSON), so a 40 GB
    checkpoint costs a few kilobytes of I/O.
    """
    try:
        with open(file, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                return {}
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER_BYTES:
                return {}
            header = json.loads(stream.read(length).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        return {}
    return {str(key): str(value) for key, value in metadata.items()}


def model_versions(weights_dir: str | os.PathLike) -> dict[str, str]:
    """``model_version`` of each top-level ``*.safetensors`` of a folder that carries one, by file name."""
    root = Path(weights_dir)
    if not root.is_dir():
        return {}
    versions = {}
    for file in sorted(root.glob("*.safetensors")):
        version = safetensors_metadata(file).get("model_version")
        if version:
            versions[file.name] = version
    return versions


def generation_for_model_version(version: str) -> Generation | None:
    """The served (non-tiny) generation whose prefix starts ``version``, the longest prefix winning."""
    served = [g for g in GENERATIONS.values() if not g.is_tiny and g.model_version_prefix]
    candidates = [g for g in served if version.startswith(g.model_version_prefix)]
    return max(candidates, key=lambda g: len(g.model_version_prefix), default=None)


def detect_generation(weights_dir: str | os.PathLike) -> str | None:
    """The ``--model`` name of the generation a weights folder holds, or None when it holds no model.

    1. A top-level checkpoint whose ``model_version`` metadata names a generation (``2.3...`` is LTX-2.3):
       Lightricks' single-file checkpoints carry it, and its pipelines choose their defaults by it.
    2. Otherwise LTX-2.5's per-component folder: its ``modular_model_index.json`` names LTX-2.5's pipeline
       (or, without one, its ``model_index.json`` lists a diffusion decoder or a Gemma 4 text encoder).
    3. Otherwise a diffusers ``model_index.json``: the diffusers-format LTX-2 19B repository (whose fp8 and
       distilled single files, when present, name no later generation).
    Pure file reads (headers only): safe to call from the API process.
    """
    for version in model_versions(weights_dir).values():
        found = generation_for_model_version(version)
        if found is not None:
            return found.name
    if is_ltx25_folder(weights_dir):
        return LTX_2_5.name
    if (Path(weights_dir) / MODEL_INDEX_FILE).is_file():
        return LTX_2_19B.name
    return None


def check_weights(model: str, weights_dir: str | os.PathLike, recipe: str = "two-stage") -> list[str]:
    """Every problem that would stop ``model`` loading from ``weights_dir`` for ``recipe``, one per file, then a
    ``fix: ...`` line with the download command; [] when complete, and for the tiny models (nothing to load).
    Headers only, torch-free: the API process runs it before starting workers."""
    layout = generation(model).weights_layout
    if layout == "diffusers-folder":
        from .weights import check_weights as check_diffusers_folder

        return check_diffusers_folder(weights_dir)
    if layout == "single-file":
        from .weights_single_file import check_single_file_weights

        return check_single_file_weights(weights_dir, model, recipe)
    if layout == "diffusers-components":
        from .ltx25_layout import check_ltx25_weights

        return check_ltx25_weights(weights_dir)
    return []


__all__ = [
    "ALL_RECIPES",
    "GENERATIONS",
    "Generation",
    "LIGHTRICKS_NEGATIVE_PROMPT",
    "LTX_2_19B",
    "LTX_2_3_22B",
    "LTX_2_3_POLICY",
    "LTX_2_5",
    "check_weights",
    "TINY",
    "TINY_2_3",
    "TINY_2_5",
    "detect_generation",
    "generation",
    "generation_for_model_version",
    "model_names",
    "model_versions",
    "safetensors_metadata",
]
