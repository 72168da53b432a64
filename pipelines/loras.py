"""The user's LoRAs (``--loras DIR``): loaded once at start as named peft adapters on the transformer(s),
switched on per request with the request's scales, and off again after it.

What a request's LoRAs apply to follows Lightricks' pipelines (ltx-pipelines 1.0.0): ``TI2VidTwoStagesPipeline``
builds stage 1's transformer with the user's LoRAs fused in and stage 2's with the same LoRAs plus the
distilled LoRA (``ModelLedger.with_additional_loras``); ``DistilledPipeline`` runs both stages with them. So
every stage of every recipe runs them; a stage that runs the distilled LoRA runs it beside them. Their fuse
(ltx_core.loader.fuse_loras) adds ``strength * B @ A`` per LoRA to each matrix: no alpha/rank factor, so a
file's ``.alpha`` entries are ignored here too, and a peft adapter of scale s gives the same sum.

Nothing is fused: an adapter is a side path of the matrix (peft), active only while a request that asked
for it runs, so the base weights are never written and a request without LoRAs computes exactly what it
did before any LoRA request. The distilled LoRA's own adapter (pipelines/loader.py) keeps working as
before: between requests every LoRA layer is back to its start-up state (the distilled adapter the only
active one, all switched off). With ``--stage2-lora merged``/``merged-fp8`` the second (merged) transformer
gets its own copy of every user adapter; with fp8 the adapters are loaded before the matrices go to fp8, so
their factors are stored in fp8 as the distilled LoRA's are (pipelines/fp8.py).

Formats that load as they are: Lightricks' (``diffusion_model.<module>.lora_A.weight``, as ltx-pipelines' and
ComfyUI's LTX-2 LoRAs are published, renamed by diffusers' LTX2LoraLoaderMixin), diffusers'
(``transformer.<module>.lora_A.weight``), peft's (``base_model.model.<module>...`` or bare module names),
each with ``lora_down``/``lora_up`` accepted for ``lora_A``/``lora_B``. Text-connector entries
(``text_embedding_projection.*``, ``*_embeddings_connector.*``) are skipped, as Lightricks' pipelines apply
LoRAs to the transformer only.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .interface import InvalidInputError, LoraChoice
from .lora_files import MAX_LORAS_PER_REQUEST, LoraFile, LoraFolderError

log = logging.getLogger("ltx2.loras")

_FACTOR_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
_RENAMED_FACTORS = {".lora_down.weight": ".lora_A.weight", ".lora_up.weight": ".lora_B.weight"}
_PEFT_PREFIXES = ("transformer.", "base_model.model.")


class LoraLoadError(LoraFolderError):
    """A --loras file cannot be applied to this model; the message names the file and why."""


@dataclass(frozen=True)
class LoadedLora:
    name: str
    adapter: str  # the peft adapter name (a LoRA's name may hold '.', which peft's module dicts refuse)
    file: LoraFile
    matrices: int  # how many of the transformer's matrices it changes
    load_seconds: float


# -- reading a file --------------------------------------------------------------------------------------------


def read_transformer_factors(path, what: str) -> dict[str, torch.Tensor]:
    """``path``'s LoRA factors keyed by the diffusers transformer's module names:
    ``{"<module>.lora_A.weight": A [r, in], "<module>.lora_B.weight": B [out, r], ...}``."""
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for a damaged file
        raise LoraLoadError(f"loras: {what}: cannot read it as safetensors ({error})") from None
    return transformer_factors(raw, what)


def transformer_factors(raw: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Any of the accepted key layouts -> the diffusers transformer's module names (see the module docstring)."""
    from diffusers.loaders.lora_pipeline import LTX2LoraLoaderMixin

    state = {_renamed_factor(key): value for key, value in raw.items() if not key.endswith(".alpha")}
    if any(key.startswith("diffusion_model.") for key in state):
        skipped = sorted(key for key in state if _is_text_connector(key))
        if skipped:
            log.info("loras: %s: %d text-connector entries skipped (the transformer only)", what, len(skipped))
        kept = {key: value for key, value in state.items() if key not in skipped}
        converted = LTX2LoraLoaderMixin.lora_state_dict(kept)
        return {key.removeprefix("transformer."): value for key, value in converted.items()}
    for prefix in _PEFT_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            return {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def _renamed_factor(key: str) -> str:
    for old, new in _RENAMED_FACTORS.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def _is_text_connector(key: str) -> bool:
    return key.startswith("text_embedding_projection.") or "_embeddings_connector." in key


def applicable_factors(
    factors: dict[str, torch.Tensor], transformer: torch.nn.Module, what: str
) -> dict[str, torch.Tensor]:
    """The factors of ``transformer``'s matrices. Pairs for matrices it does not have are left out with a
    warning, as Lightricks' fuse leaves them (it looks up each model matrix's pair in the file); anything
    else is a LoraLoadError naming ``what``: an entry that is not a lora_A/lora_B weight, half a pair, a pair
    whose widths do not fit the matrix (a LoRA for another model), or no matrix of this model at all."""
    if not factors:
        raise LoraLoadError(f"loras: {what}: holds no LoRA factors")
    odd = [key for key in factors if not key.endswith(_FACTOR_SUFFIXES)]
    if odd:
        raise LoraLoadError(f"loras: {what}: {odd[0]} is not a lora_A/lora_B weight ({len(odd)} such entries)")
    modules = dict(transformer.named_modules())
    targets = sorted({key.rsplit(".", 2)[0] for key in factors})
    missing = [target for target in targets if target not in modules]
    if missing:
        log.warning("loras: %s: %d matrices not in this model, left out: %s", what, len(missing), ", ".join(missing))
    kept = [target for target in targets if target in modules]
    if not kept:
        raise LoraLoadError(f"loras: {what}: none of its {len(targets)} matrices is in this model's transformer")
    for target in kept:
        _check_pair(factors, target, modules[target], what)
    return {key: value for key, value in factors.items() if key.rsplit(".", 2)[0] in kept}


def _check_pair(factors: dict[str, torch.Tensor], target: str, matrix: torch.nn.Module, what: str) -> None:
    a, b = factors.get(f"{target}.lora_A.weight"), factors.get(f"{target}.lora_B.weight")
    if a is None or b is None:
        raise LoraLoadError(f"loras: {what}: {target} has only one of lora_A/lora_B")
    matrix = getattr(matrix, "base_layer", matrix)  # already wrapped by another adapter
    if not isinstance(matrix, torch.nn.Linear):
        raise LoraLoadError(f"loras: {what}: {target} is a {type(matrix).__name__}, not a linear layer")
    fits = a.ndim == 2 and b.ndim == 2 and a.shape[0] == b.shape[1]
    if not fits or (a.shape[1], b.shape[0]) != (matrix.in_features, matrix.out_features):
        raise LoraLoadError(
            f"loras: {what}: {target} is {matrix.in_features}->{matrix.out_features} here, but the LoRA's "
            f"factors are A {tuple(a.shape)}, B {tuple(b.shape)} (a LoRA for another model?)"
        )


# -- adapters --------------------------------------------------------------------------------------------------


def _lora_layers(transformer: torch.nn.Module) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in transformer.modules() if isinstance(module, BaseTunerLayer)]


def add_adapter(transformer: torch.nn.Module, factors: dict[str, torch.Tensor], adapter: str) -> None:
    load = getattr(transformer, "load_lora_adapter", None)
    if load is None:
        raise LoraLoadError(f"loras: this model's transformer ({type(transformer).__name__}) cannot take LoRAs")
    # A fresh dict of fresh tensors per transformer: peft copies values in, but the two must share nothing.
    # peft warns of "multiple adapters in the model" for every adapter after the first: here that is the design.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        state = {f"transformer.{key}": value.clone() for key, value in factors.items()}
        load(state, adapter_name=adapter, prefix="transformer")


def set_active(transformer: torch.nn.Module, adapters: Sequence[tuple[str, float | None]]) -> None:
    """Exactly ``adapters`` (name, scale; None keeps the adapter's own) active on every LoRA layer of
    ``transformer``; none: all off."""
    names = [name for name, _scale in adapters]
    for layer in _lora_layers(transformer):
        layer.set_adapter(names, inference_mode=True)
        for name, scale in adapters:
            if scale is not None:
                layer.set_scale(name, scale)
        layer.enable_adapters(bool(names))


def restore(transformer: torch.nn.Module, resting: Sequence[str]) -> None:
    """The start-up state: ``resting`` (the distilled adapter, or nothing) the active adapters, all off. The
    distilled adapter's scale is never changed, so switching it on again gives the same numbers as before."""
    for layer in _lora_layers(transformer):
        layer.set_adapter(list(resting), inference_mode=True)
        layer.enable_adapters(False)


class LoraLibrary:
    """The loaded user LoRAs and which of them the request being generated asked for.

    ``applied(choices)`` spans one request (the worker runs one at a time); inside it each denoising stage
    wraps its transformer in ``stage(transformer, distilled_adapter)``.
    """

    def __init__(self, loras: Sequence[LoadedLora], resting: dict[torch.nn.Module, tuple[str, ...]]) -> None:
        self.loras = {lora.name: lora for lora in loras}
        self._resting = resting  # each transformer holding the adapters -> its start-up active adapters
        self._requested: tuple[tuple[str, float], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.loras)

    @property
    def requested(self) -> bool:
        return bool(self._requested)

    def summary(self) -> str:
        if not self.loras:
            return "LoRAs: none"
        listed = ", ".join(f"{lora.name} (rank {lora.file.rank})" for lora in self.loras.values())
        return f"LoRAs: {listed}"

    def resolve(self, choices: Sequence[LoraChoice]) -> tuple[tuple[str, float], ...]:
        """(adapter, scale) for each choice of non-zero scale (scale 0 leaves a LoRA out: the base's
        numbers exactly); InvalidInputError naming ``loras`` for anything this server cannot apply."""
        if len(choices) > MAX_LORAS_PER_REQUEST:
            raise InvalidInputError(f"loras: at most {MAX_LORAS_PER_REQUEST} per request; got {len(choices)}")
        seen: set[str] = set()
        resolved = []
        for index, choice in enumerate(choices):
            lora = self.loras.get(choice.name)
            if lora is None:
                available = ", ".join(self.loras) or "none (the server was started without --loras)"
                raise InvalidInputError(f"loras[{index}].name: no LoRA {choice.name!r}; available: {available}")
            if choice.name in seen:
                raise InvalidInputError(f"loras[{index}].name: {choice.name!r} is listed twice")
            if not math.isfinite(choice.scale):
                raise InvalidInputError(f"loras[{index}].scale: must be a finite number; got {choice.scale}")
            seen.add(choice.name)
            if choice.scale != 0.0:
                resolved.append((lora.adapter, float(choice.scale)))
        return tuple(resolved)

    @contextmanager
    def applied(self, choices: Sequence[LoraChoice]) -> Iterator[None]:
        """One request with ``choices``; afterwards (also on an error or a cancel) every LoRA is off again."""
        self._requested = self.resolve(choices)
        try:
            yield
        finally:
            self._requested = ()
            for transformer, resting in self._resting.items():
                restore(transformer, resting)

    @contextmanager
    def stage(self, transformer: torch.nn.Module, distilled_adapter: str | None) -> Iterator[torch.nn.Module]:
        """``transformer`` with the request's LoRAs on (and the distilled LoRA's adapter beside them, at its
        own scale, when the stage runs it) while the stage runs."""
        adapters: list[tuple[str, float | None]] = list(self._requested)
        if distilled_adapter is not None:
            adapters.append((distilled_adapter, None))
        set_active(transformer, adapters)
        try:
            yield transformer
        finally:
            restore(transformer, self._resting.get(transformer, ()))


def load_library(files: Sequence[LoraFile], transformers: dict[torch.nn.Module, tuple[str, ...]]) -> LoraLibrary:
    """Each file as an adapter on each of ``transformers`` (transformer -> its resting active adapters, e.g.
    the distilled LoRA's); a file that cannot be applied is a LoraLoadError naming it."""
    loaded = []
    first = next(iter(transformers))
    for index, file in enumerate(files):
        start = time.perf_counter()
        factors = applicable_factors(read_transformer_factors(file.path, file.path.name), first, file.path.name)
        adapter = f"user_lora_{index}"
        for transformer in transformers:
            try:
                add_adapter(transformer, factors, adapter)
            except LoraLoadError:
                raise
            except Exception as error:  # peft/diffusers refusing the adapter
                raise LoraLoadError(f"loras: {file.path.name}: cannot be loaded ({error})") from None
        seconds = time.perf_counter() - start
        matrices = len(factors) // 2
        loaded.append(LoadedLora(file.name, adapter, file, matrices, seconds))
        log.info("LoRA %s: %d matrices, rank %s, loaded in %.2f s", file.name, matrices, file.rank, seconds)
    for transformer, resting in transformers.items():
        restore(transformer, resting)  # a newly wrapped layer starts with its new adapter active
    return LoraLibrary(loaded, transformers)
