"""Prompt enhancement (pipelines/enhance.py) against Lightricks' own: ltx-pipelines' generate_enhanced_prompt
driving ltx-core's GemmaTextEncoder (enhance_t2v / enhance_i2v), both around the same tiny random Gemma 3
(pipelines.tiny's text encoder, vision tower included) with a tokenizer that knows Gemma's turn and image
tokens and carries Gemma 3's chat template, as the real one does. Random weights write gibberish, but the
same gibberish for a seed: the rewritten prompts must be equal character for character, which needs every
sampled token equal (system prompt, chat, image tokens, pixels, padding, sampling settings and seeding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tests.parity.reference  # noqa: F401
from pipelines.enhance import MAX_NEW_TOKENS, PromptEnhancer, chat_messages, gemma3_turns
from pipelines.generate import load_image
from pipelines.tiny import TINY_ENHANCE_NEW_TOKENS, _build_text_encoder
from tests.parity.record import record

# Gemma 3's chat template (Google, google/gemma-3-*-it tokenizer_config.json), as reference data.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)

PROMPT = "A fox trots across a snowy field at dawn \u2014 \u201cquietly\u201d"
SEEDS = (7, 2024)


def gemma_like_tokenizer(chat_template: str | None = GEMMA3_CHAT_TEMPLATE):
    """pipelines.tiny's byte tokenizer plus Gemma's turn tokens, with the turn and image tokens registered as
    special (as in the real tokenizer, so Gemma3Processor finds them)."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_image>", "<end_of_image>"]
    specials += ["<image_soft_token>", "<start_of_turn>", "<end_of_turn>"]
    vocab = {token: index for index, token in enumerate(specials)}
    vocab |= {f"<0x{byte:02X}>": len(specials) + byte for byte in range(256)}
    image_tokens = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], extra_special_tokens=image_tokens)
    tokenizer.add_tokens(["<start_of_turn>", "<end_of_turn>"], special_tokens=True)
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return gemma_like_tokenizer()


@pytest.fixture(scope="module")
def gemma(tokenizer):
    return _build_text_encoder(len(tokenizer), tokenizer)


def as_lightricks(gemma, tokenizer) -> PromptEnhancer:
    """Our enhancer with the reference's bound (the tiny encoder asks for fewer tokens; the reference
    passes its 512 explicitly)."""
    return PromptEnhancer(gemma, tokenizer, max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def reference_processor(gemma, tokenizer):
    """Gemma 3's processor as ltx-core builds it (module_ops_from_gemma_root), sized to the tiny vision tower."""
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    side = gemma.config.vision_config.image_size
    image_processor = Gemma3ImageProcessorPil(size={"height": side, "width": side})
    return Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=gemma.config.mm_tokens_per_image
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rows, cols = np.mgrid[0:75, 0:100]  # not square, not a multiple of anything
    pixels = np.stack([rows * 3, cols * 2, (rows * cols) % 256], axis=-1) % 256
    path = tmp_path_factory.mktemp("enhance") / "frame0.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def reference_rewrite(gemma, reference_processor):
    """ltx-pipelines' generate_enhanced_prompt(prompt, image path or None, seed) on ltx-core's GemmaTextEncoder
    around the same Gemma (each answer computed once per module).

    ltx-core's _enhance forks the RNG of the model's device as a CUDA device, which a CPU-only torch cannot do:
    there the fork is given no CUDA devices (it still forks and restores the CPU generator, the one that
    samples on the CPU)."""
    from ltx_core.text_encoders.gemma import GemmaTextEncoder
    from ltx_pipelines.utils.helpers import generate_enhanced_prompt

    encoder = GemmaTextEncoder(model=gemma, processor=reference_processor, dtype=torch.float32)
    answers: dict[tuple[str | None, int], str] = {}

    def rewrite(image_path: str | None, seed: int) -> str:
        if (image_path, seed) not in answers:
            with pytest.MonkeyPatch.context() as patch:
                if not torch.cuda.is_available():
                    fork_rng = torch.random.fork_rng
                    patch.setattr(torch.random, "fork_rng", lambda devices=None, **kw: fork_rng(devices=[], **kw))
                answers[(image_path, seed)] = generate_enhanced_prompt(encoder, PROMPT, image_path, seed=seed)
        return answers[(image_path, seed)]

    return rewrite


def test_the_system_prompts_are_ltx_cores():
    from ltx_core.text_encoders.gemma.encoders.base_encoder import _load_system_prompt

    assert chat_messages("x", with_image=False)[0]["content"] == _load_system_prompt("gemma_t2v_system_prompt.txt")
    assert chat_messages("x", with_image=True)[0]["content"] == _load_system_prompt("gemma_i2v_system_prompt.txt")


@pytest.mark.parametrize("with_image", [False, True])
def test_the_fallback_chat_format_is_gemma3s_template(tokenizer, with_image):
    """A tokenizer without a chat template gets Gemma 3's turns rendered in code: the same text."""
    messages = chat_messages(PROMPT + "  ", with_image=with_image)
    theirs = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert gemma3_turns(messages, tokenizer.bos_token) == theirs


@pytest.mark.parametrize("with_image", [False, True])
def test_generate_gets_the_reference_inputs(gemma, tokenizer, reference_processor, photo, with_image):
    """The chat's token ids (image tokens spliced in by id), mask, token types, right padding and pixel values
    equal those ltx-core hands to generate()."""
    from ltx_core.text_encoders.gemma.encoders.base_encoder import _pad_inputs_for_attention_alignment
    from ltx_pipelines.utils.media_io import decode_image, resize_aspect_ratio_preserving

    image = load_image(photo) if with_image else None
    reference_image = None
    if with_image:
        reference_image = resize_aspect_ratio_preserving(torch.tensor(decode_image(str(photo))), 896).to(torch.uint8)
    ours = PromptEnhancer(gemma, tokenizer).model_inputs(PROMPT, image)
    text = tokenizer.apply_chat_template(
        chat_messages(PROMPT, with_image=with_image), tokenize=False, add_generation_prompt=True
    )
    theirs = reference_processor(text=text, images=reference_image, return_tensors="pt")
    theirs = _pad_inputs_for_attention_alignment(theirs, pad_token_id=tokenizer.pad_token_id)
    assert sorted(ours) == sorted(theirs.keys())
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert (ours["input_ids"] == gemma.config.image_token_id).sum() == (4 if with_image else 0)
    assert ours["input_ids"].shape[1] % 8 == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_text_to_video_rewrite_equals_the_reference(gemma, tokenizer, reference_rewrite, seed):
    theirs = reference_rewrite(None, seed)
    ours = as_lightricks(gemma, tokenizer).enhance(PROMPT, None, seed)
    record("prompt enhancement (t2v): rewritten prompt differs", float(ours != theirs), 0, unit="mismatch")
    assert theirs.strip() and ours == theirs


def test_image_to_video_rewrite_equals_the_reference(gemma, tokenizer, reference_rewrite, photo):
    seed = SEEDS[0]
    theirs = reference_rewrite(str(photo), seed)
    ours = as_lightricks(gemma, tokenizer).enhance(PROMPT, load_image(photo), seed)
    record("prompt enhancement (i2v): rewritten prompt differs", float(ours != theirs), 0, unit="mismatch")
    assert theirs.strip() and ours == theirs
    assert ours != reference_rewrite(None, seed)  # the image was looked at


def test_the_rewrite_is_bounded(gemma, tokenizer):
    """512 new tokens at most, as Lightricks' pipelines; the tiny encoder's generation config asks for fewer."""
    assert PromptEnhancer(gemma, tokenizer).max_new_tokens == TINY_ENHANCE_NEW_TOKENS < MAX_NEW_TOKENS == 512
    enhancer = PromptEnhancer(gemma, tokenizer)
    new_tokens = enhancer.generate(enhancer.model_inputs(PROMPT, None), seed=3)
    assert 0 < len(new_tokens) <= TINY_ENHANCE_NEW_TOKENS


def test_a_seed_rewrites_the_same_and_another_seed_differently(gemma, tokenizer):
    enhancer = PromptEnhancer(gemma, tokenizer, max_new_tokens=24)
    first = enhancer.enhance(PROMPT, None, 1)
    assert enhancer.enhance(PROMPT, None, 1) == first
    assert enhancer.enhance(PROMPT, None, 2) != first


def test_the_rng_of_the_generation_is_left_alone(gemma, tokenizer):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PromptEnhancer(gemma, tokenizer, max_new_tokens=8).enhance(PROMPT, None, 5)
    assert torch.equal(torch.rand(3), expected)


def test_weights_with_googles_sampling_defaults_rewrite_as_the_reference(gemma, tokenizer, reference_rewrite):
    """generation_config.json shipped beside Gemma (top-k 64, top-p 0.95) does not change the rewrite."""
    theirs = reference_rewrite(None, SEEDS[0])
    saved = gemma.generation_config
    try:
        gemma.generation_config = type(saved).from_dict({**saved.to_dict(), "top_k": 64, "top_p": 0.95})
        ours = as_lightricks(gemma, tokenizer).enhance(PROMPT, None, SEEDS[0])
    finally:
        gemma.generation_config = saved
    assert ours == theirs
