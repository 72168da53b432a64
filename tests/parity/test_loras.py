"""A user's LoRA in the two-stage recipe against Lightricks' pipeline on the twins: ``TI2VidTwoStagesPipeline``
fuses the user's LoRAs into stage 1's transformer and the same LoRAs plus the distilled LoRA into stage 2's
(``ModelLedger.with_additional_loras``); ours switches the same LoRA file on as a peft adapter in both stages,
beside the distilled LoRA's adapter in stage 2 (pipelines/loras.py)."""

from __future__ import annotations

import copy
import dataclasses
import types

import pytest
import torch
from safetensors.torch import save_file

from pipelines.interface import LoraChoice
from pipelines.loader import attach_user_loras
from pipelines.lora_files import list_loras
from pipelines.tiny import random_lightricks_lora
from tests.parity import test_recipes
from tests.parity.test_recipes import FULL_GUIDANCE, assert_same_latents, run_ours, run_theirs
from tests.parity.twins import fuse_lora

# The recipe tests' own inputs (an off-ratio image, random prompt contexts).
image_path, contexts = test_recipes.image_path, test_recipes.contexts

SCALE = 0.8
# Block matrices of both modalities and both attention kinds; their names are the same in ltx-core and diffusers.
TARGETS = ("attn1.to_q", "attn2.to_v", "audio_attn1.to_k", "ff.net.2", "audio_ff.net.0.proj")


@pytest.fixture(scope="module")
def user_lora(twins) -> dict[str, torch.Tensor]:
    """Lightricks' key format, drawn over the reference transformer's own module names."""
    velocity = twins.reference.transformer.velocity_model
    return random_lightricks_lora(velocity, targets=TARGETS, rank=3, seed=77, std_a=0.2, std_b=0.2)


def test_two_stage_with_a_user_lora_matches_the_reference(
    twins,
    user_lora,
    image_path,
    contexts,
    monkeypatch,
    tmp_path,
):
    from ltx_core.model.transformer.model import X0Model

    save_file(user_lora, tmp_path / "user.safetensors")
    bundle = copy.deepcopy(twins.bundle)  # the twins are shared by the session: leave theirs without adapters
    attach_user_loras(bundle, list_loras(tmp_path))
    with bundle.user_loras.applied([LoraChoice("user", SCALE)]):
        ours = run_ours(bundle, "two-stage", image_path, contexts, FULL_GUIDANCE)

    velocity = twins.reference.transformer.velocity_model
    reference = dataclasses.replace(
        twins.reference,
        transformer=X0Model(fuse_lora(velocity, user_lora, SCALE)).eval(),
        transformer_lora=X0Model(fuse_lora(fuse_lora(velocity, twins.lora), user_lora, SCALE)).eval(),
    )
    theirs = run_theirs(
        types.SimpleNamespace(reference=reference), "two-stage", image_path, contexts, FULL_GUIDANCE, monkeypatch
    )
    assert_same_latents(bundle, ours, theirs, "two-stage recipe with a user LoRA at 0.8")

    # Not vacuous: without the LoRA the same run lands elsewhere.
    plain = run_ours(bundle, "two-stage", image_path, contexts, FULL_GUIDANCE)
    assert (plain.video - ours.video).abs().max() > 1e-2
