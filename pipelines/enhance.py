"""Prompt enhancement: the loaded Gemma rewrites a short prompt into the detailed kind LTX-2 was trained on.

What Lightricks' pipelines do when asked to enhance a prompt (ltx-pipelines 1.0.0 ``generate_enhanced_prompt``
around ltx-core's ``GemmaTextEncoder.enhance_t2v`` / ``enhance_i2v``), re-implemented on the text encoder this
server already holds (no second model, nothing downloaded):

- one chat: Lightricks' system prompt (pipelines/enhance_prompts.py; one for text-to-video, one for
  image-to-video), then the user's turn: ``user prompt: <prompt>`` or, with an image, the image followed by
  ``User Raw Input Prompt: <prompt>.``, rendered with the tokenizer's chat template (Gemma 3's turn format
  when the tokenizer has none);
- the image (the video's first frame) is scaled to a long side of 896 px as Lightricks' pipelines do, then
  given to Gemma's own image preprocessing (its SigLIP tower's square input);
- the token ids are padded on the right to a multiple of 8, as ltx-core pads them (diffusers' port pads on
  the left; ltx-core is the reference);
- sampling: up to 512 new tokens (fewer if the encoder's generation config asks: the tiny test models do),
  temperature 0.7 (top-k 50, top-p 1: what a Gemma built from its config samples with, whatever
  generation_config.json came with the weights), the torch RNG seeded with the request's seed inside a fork,
  so a seed gives the same rewrite and the generation's own noise is untouched;
- the answer is tidied as ltx-pipelines does (typographic quotes and dashes made plain, anything before the
  first letter dropped). A blank answer falls back to the user's prompt.

Only a Gemma 3 text encoder (LTX-2, LTX-2.3) rewrites prompts: LTX-2.5's Gemma 4 encoder was not trained for
it, and the dedicated enhancer Lightricks ship with LTX-2.5 is not loaded by this server.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from .enhance_prompts import I2V_SYSTEM_PROMPT, T2V_SYSTEM_PROMPT
from .interface import InvalidInputError

MAX_NEW_TOKENS = 512
TEMPERATURE = 0.7
# What transformers samples with when the model's generation config does not say (ltx-core's Gemma is built
# from its config, so these apply there): pinned here so weights shipped with Google's sampling defaults
# (top-k 64, top-p 0.95) rewrite the same way as Lightricks' pipelines.
TOP_K = 50
TOP_P = 1.0
IMAGE_LONG_SIDE = 896
# ltx-core pads the prompt's token ids to a multiple of 8 (for flash attention) before generating.
TOKEN_ALIGNMENT = 8
IMAGE_PLACEHOLDER = "<start_of_image>"  # where Gemma 3's chat template puts an image

# Typographic characters Gemma likes and the plain ones ltx-pipelines replaces them with.
_PLAIN_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2014": "-",
        "\u2013": "-",
        "\u00a0": " ",
        "\u2032": "'",
        "\u2212": "-",
    }
)


def tidy_response(text: str) -> str:
    """Plain punctuation, and nothing before the first letter (Gemma tends to open with quotes or bullets)."""
    text = text.translate(_PLAIN_PUNCTUATION)
    first_letter = next((index for index, char in enumerate(text) if char.isalpha()), 0)
    return text[first_letter:]


def chat_messages(prompt: str, with_image: bool) -> list[dict[str, Any]]:
    """The conversation Lightricks' enhancer has with Gemma (a system turn, then the user's)."""
    if not with_image:
        return [
            {"role": "system", "content": T2V_SYSTEM_PROMPT},
            {"role": "user", "content": f"user prompt: {prompt}"},
        ]
    return [
        {"role": "system", "content": I2V_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": f"User Raw Input Prompt: {prompt}."}],
        },
    ]


def gemma3_turns(messages: list[dict[str, Any]], bos_token: str) -> str:
    """Gemma 3's chat format, for a tokenizer that carries no chat template: the system text opens the first
    user turn, each turn's text is trimmed, an image is its placeholder, and the model's turn is left open."""
    system = ""
    if messages and messages[0]["role"] == "system":
        system = messages[0]["content"] + "\n\n"
        messages = messages[1:]
    rendered = [bos_token]
    for index, message in enumerate(messages):
        role = "model" if message["role"] == "assistant" else message["role"]
        content = message["content"]
        parts = [content] if isinstance(content, str) else [_part_text(part) for part in content]
        body = "".join(part if part == IMAGE_PLACEHOLDER else part.strip() for part in parts)
        rendered.append(f"<start_of_turn>{role}\n{system if index == 0 else ''}{body}<end_of_turn>\n")
    rendered.append("<start_of_turn>model\n")
    return "".join(rendered)


def _part_text(part: dict[str, Any]) -> str:
    return IMAGE_PLACEHOLDER if part["type"] == "image" else part.get("text", "")


def scaled_to_long_side(image: Image.Image, long_side: int = IMAGE_LONG_SIDE) -> torch.Tensor:
    """The image as uint8 [H, W, 3] with its long side at ``long_side``, prepared as ltx-pipelines prepares
    the enhancer's reference image: bilinear without antialiasing to a size that covers the target (rounded
    up), then centre-cropped to it."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).unsqueeze(0)
    height, width = pixels.shape[-2:]
    scale = long_side / max(height, width)
    target_height, target_width = int(height * scale), int(width * scale)
    cover = max(target_height / height, target_width / width)
    cover_height, cover_width = math.ceil(height * cover), math.ceil(width * cover)
    covered = torch.nn.functional.interpolate(
        pixels, size=(cover_height, cover_width), mode="bilinear", align_corners=False
    )
    top, left = (cover_height - target_height) // 2, (cover_width - target_width) // 2
    cropped = covered[0, :, top : top + target_height, left : left + target_width]
    return cropped.permute(1, 2, 0).to(torch.uint8)


def new_tokens_bound(text_encoder) -> int:
    """How many tokens a rewrite may take: Lightricks' 512, or fewer where the encoder's generation config
    asks for fewer (the tiny test models do, so their gibberish rewrites stay quick)."""
    configured = getattr(getattr(text_encoder, "generation_config", None), "max_new_tokens", None)
    return min(MAX_NEW_TOKENS, configured) if configured else MAX_NEW_TOKENS


def gemma3_image_processor(text_encoder):
    """Gemma 3's image preprocessing for this encoder's vision tower (Google's preprocessor_config.json:
    a square of the tower's input size, bilinear, scaled to [-1, 1])."""
    import importlib.util

    # transformers' default (torchvision) backend where torchvision is installed, as AutoImageProcessor picks.
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import Gemma3ImageProcessor as processor_class
    else:
        from transformers import Gemma3ImageProcessorPil as processor_class
    side = text_encoder.config.vision_config.image_size
    return processor_class(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2)


class PromptEnhancer:
    """Rewrites prompts with a Gemma 3 text encoder (Gemma3ForConditionalGeneration, vision tower included).

    ``image_processor``: the weights' own (a diffusers folder's processor/), or Gemma 3's built for the
    encoder's vision tower. ``device``: where the inputs go (the pipeline's execution device; an offloaded
    encoder is brought there by its hooks when it runs).
    """

    def __init__(
        self,
        text_encoder,
        tokenizer,
        *,
        image_processor=None,
        device: torch.device | str | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        model_type = getattr(text_encoder.config, "model_type", "")
        if model_type != "gemma3":
            model = "LTX-2.5" if model_type.startswith("gemma4") else f"this model (text encoder {model_type})"
            raise InvalidInputError(f"enhance_prompt: not offered by {model}")
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self._image_processor = image_processor
        self.device = torch.device(device) if device is not None else text_encoder.device
        self.max_new_tokens = max_new_tokens or new_tokens_bound(text_encoder)

    @property
    def image_processor(self):
        if self._image_processor is None:
            self._image_processor = gemma3_image_processor(self.text_encoder)
        return self._image_processor

    @classmethod
    def for_pipe(cls, pipe, device=None, **options) -> PromptEnhancer:
        processor = getattr(pipe, "processor", None)
        image_processor = getattr(processor, "image_processor", None)
        return cls(pipe.text_encoder, pipe.tokenizer, image_processor=image_processor, device=device, **options)

    def enhance(self, prompt: str, image: Image.Image | None, seed: int) -> str:
        """``prompt`` rewritten (looking at ``image``, the first frame, when given); the same for a seed.
        Falls back to ``prompt`` itself when Gemma answers with nothing but whitespace."""
        inputs = self.model_inputs(prompt, image)
        new_tokens = self.generate(inputs, seed)
        answer = tidy_response(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        return answer if answer.strip() else prompt

    def model_inputs(self, prompt: str, image: Image.Image | None) -> dict[str, torch.Tensor]:
        """What Gemma's generate() is given: the chat's token ids (image tokens in place), their attention
        mask and token types, padded to the alignment; and the image's pixel values."""
        text = self.render_chat(chat_messages(prompt, with_image=image is not None))
        ids = self.token_ids(text, images=0 if image is None else 1)
        config = self.text_encoder.config
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": (ids == config.image_token_id).long(),
        }
        inputs = right_padded(inputs, self.pad_token_id, TOKEN_ALIGNMENT)
        if image is not None:
            inputs["pixel_values"] = self.pixel_values(image)
        return {name: tensor.to(self.device) for name, tensor in inputs.items()}

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return gemma3_turns(messages, self.tokenizer.bos_token or "")

    def token_ids(self, text: str, images: int) -> torch.Tensor:
        """[1, length] ids of ``text`` with each image placeholder expanded as Gemma 3's processor expands it
        (a blank line, begin-of-image, the image's soft tokens, end-of-image, a blank line). The image tokens
        are placed by id, so a tokenizer that does not know them by name still gets them right."""
        config = self.text_encoder.config
        image_ids = [config.boi_token_id, *[config.image_token_id] * config.mm_tokens_per_image, config.eoi_token_id]
        pieces = text.split(IMAGE_PLACEHOLDER)
        if len(pieces) != images + 1:
            raise ValueError(f"the chat holds {len(pieces) - 1} image placeholders for {images} images")
        if images:
            pieces = [pieces[0] + "\n\n", *["\n\n" + piece for piece in pieces[1:]]]
        ids: list[int] = list(self.tokenizer(pieces[0])["input_ids"])  # the tokenizer's own special tokens once
        for piece in pieces[1:]:
            ids += image_ids + list(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
        return torch.tensor([ids], dtype=torch.long)

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        scaled = scaled_to_long_side(image)
        processed = self.image_processor(
            images=[scaled], return_tensors="pt", do_convert_rgb=True, do_pan_and_scan=False
        )
        return processed["pixel_values"]

    @property
    def pad_token_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return pad if pad is not None else 0

    def generation_config(self):
        from transformers import GenerationConfig

        config = GenerationConfig.from_model_config(self.text_encoder.config)
        config.update(
            max_new_tokens=self.max_new_tokens, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P
        )
        return config

    def generate(self, inputs: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        """The new token ids, sampled with the torch RNG seeded by ``seed`` (and restored afterwards)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            output = self.text_encoder.generate(**inputs, generation_config=self.generation_config())
        return output[0, inputs["input_ids"].shape[1] :]


def right_padded(inputs: dict[str, torch.Tensor], pad_token_id: int, alignment: int) -> dict[str, torch.Tensor]:
    """Sequences padded at the end to a multiple of ``alignment``: pad ids, masked out, text-typed."""
    length = inputs["input_ids"].shape[1]
    missing = -length % alignment
    if not missing:
        return inputs
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
    return {
        name: torch.cat([tensor, torch.full((1, missing), fill[name], dtype=tensor.dtype)], dim=1)
        for name, tensor in inputs.items()
    }
