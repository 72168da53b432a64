"""The text path of a single-file checkpoint (Lightricks' distilled one): the server's key mapping
(pipelines/checkpoint_keys.py, applied by pipelines.loader.load_checkpoint_connectors) against what ltx-core
reads from the same file.

Lightricks' DistilledPipeline builds its embeddings processor from the checkpoint it runs (ModelLedger's
embeddings_processor_builder: the file, EMBEDDINGS_PROCESSOR_KEY_OPS). These tests check that the server
selects exactly the tensors those key filters select, maps each one to the diffusers parameter holding the same
weight, and that connectors loaded from a file by the production loader give the reference processor's contexts
when the reference reads the same file.
"""

from __future__ import annotations

import torch

from . import reference  # noqa: F401  (before any ltx_core import)
from .test_components import assert_close
from .twins import TEXT_HIDDEN, TEXT_LAYERS, build_checkpoint_connectors


def _reference_key(key: str) -> str | None:
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import EMBEDDINGS_PROCESSOR_KEY_OPS

    return EMBEDDINGS_PROCESSOR_KEY_OPS.apply_to_key(key)


def test_the_server_reads_exactly_the_tensors_the_reference_embeddings_processor_reads(twins):
    from pipelines.checkpoint_keys import connector_key, is_connector_key

    reference_keys = {key for key in twins.checkpoint if _reference_key(key) is not None}
    server_keys = {key for key in twins.checkpoint if is_connector_key(key)}
    assert reference_keys == server_keys
    # LTX-2.0's three groups: the shared projection and the two connectors under the transformer's prefix.
    groups = {".".join(key.split(".")[:2 if key.startswith("text_") else 3]) for key in server_keys}
    assert groups == {
        "text_embedding_projection.aggregate_embed",
        "model.diffusion_model.video_embeddings_connector",
        "model.diffusion_model.audio_embeddings_connector",
    }
    # Each tensor lands where each side keeps it: same weight under the reference's and diffusers' names.
    reference_state = twins.reference.embeddings_processor.state_dict()
    diffusers_state = build_checkpoint_connectors(twins.checkpoint).state_dict()
    assert set(diffusers_state) == {connector_key(key) for key in server_keys}
    assert set(reference_state) == {_reference_key(key) for key in reference_keys}
    for key in server_keys:
        assert torch.equal(reference_state[_reference_key(key)], diffusers_state[connector_key(key)]), key


def test_connectors_from_the_checkpoint_are_the_twins_diffusers_connectors(twins):
    built, twin = build_checkpoint_connectors(twins.checkpoint).state_dict(), twins.pipe.connectors.state_dict()
    assert built.keys() == twin.keys() and all(torch.equal(built[k], twin[k]) for k in twin)


def _changed_checkpoint(checkpoint: dict) -> dict:
    """The checkpoint with every text connector tensor changed: a file whose text path is not the twins'."""
    from pipelines.checkpoint_keys import is_connector_key

    g = torch.Generator().manual_seed(31)
    return {
        key: (value + 0.1 * torch.randn(value.shape, generator=g) if is_connector_key(key) else value).contiguous()
        for key, value in checkpoint.items()
    }


def _hidden_states(valid_tokens: int, seq: int = 128):
    g = torch.Generator().manual_seed(15)
    hidden_states = tuple(3 * torch.randn(1, seq, TEXT_HIDDEN, generator=g) + i for i in range(TEXT_LAYERS + 1))
    mask = torch.zeros(1, seq, dtype=torch.int64)
    mask[:, seq - valid_tokens :] = 1  # left padding, the pipelines' default
    return hidden_states, mask


def test_the_production_loader_gives_the_contexts_the_reference_reads_from_the_same_file(twins, tmp_path):
    """One file, read twice: by pipelines.loader.load_checkpoint_connectors (into connectors built from a
    connectors/config.json) and by ltx-core's own state-dict loader with EMBEDDINGS_PROCESSOR_KEY_OPS (what
    ModelLedger.gemma_embeddings_processor loads). Same contexts, and not the twins' (the file's tensors differ)."""
    import copy

    from ltx_core.loader.sft_loader import SafetensorsModelStateDictLoader
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import EMBEDDINGS_PROCESSOR_KEY_OPS
    from safetensors.torch import save_file

    from pipelines.loader import load_checkpoint_connectors

    file = tmp_path / "ltx-2-19b-distilled.safetensors"
    save_file(_changed_checkpoint(twins.checkpoint), str(file))
    config_dir = tmp_path / "connectors"
    twins.pipe.connectors.save_config(config_dir)

    connectors = load_checkpoint_connectors(file, config_dir, torch.float32)
    processor = copy.deepcopy(twins.reference.embeddings_processor)
    state = SafetensorsModelStateDictLoader().load(str(file), sd_ops=EMBEDDINGS_PROCESSOR_KEY_OPS).sd
    missing, unexpected = processor.load_state_dict(state, strict=True)
    assert not missing and not unexpected

    for valid_tokens in (20, 128):
        hidden_states, mask = _hidden_states(valid_tokens)
        prompt_embeds = torch.stack(hidden_states, dim=-1).flatten(2, 3)  # as the pipeline packs them
        with torch.no_grad():
            ref = processor.process_hidden_states(hidden_states, mask, padding_side="left")
            video, audio, connector_mask = connectors(prompt_embeds, mask, padding_side="left")
            twin_video, _, _ = twins.pipe.connectors(prompt_embeds, mask, padding_side="left")
        assert_close(ref.video_encoding, video, f"video context from the file ({valid_tokens} tokens)")
        assert_close(ref.audio_encoding, audio, f"audio context from the file ({valid_tokens} tokens)")
        assert torch.equal(ref.attention_mask, connector_mask)
        assert (video - twin_video).abs().max() > 1e-2  # the file's connectors, not the twins'
