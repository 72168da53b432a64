"""The sigma schedules of LTX-2's recipes, as Lightricks' reference (ltx-core 1.0.0) computes them.

- Guided stage 1 (``two-stage``) and ``one-stage``: ``ltx2_sigmas(steps)``. The shift is taken at the
  4,096-token anchor of LTX-2's shift line (mu = 2.05) at every size, the way Lightricks' pipelines call
  their scheduler (without a latent), then stretched so the last non-zero sigma is 0.1. Deriving the
  shift from the real token count instead (diffusers' default) pushes large requests' schedules towards
  1.0: at 1280x1280x401, 33 of 40 steps would sit above sigma 0.9 and detail would stay unresolved.
- ``distilled`` stage 1 and every stage 2: the fixed lists the distilled weights were trained for.

Every schedule ends with 0.0: a loop runs ``len(sigmas) - 1`` Euler steps.
"""

from __future__ import annotations

import math

import torch

# LTX-2's resolution-dependent shift line, through (1,024 tokens, 0.95) and (4,096 tokens, 2.05).
BASE_SHIFT_TOKENS = 1024
MAX_SHIFT_TOKENS = 4096
BASE_SHIFT = 0.95
MAX_SHIFT = 2.05
# The shift Lightricks' pipelines use at every size: the line's value at its upper anchor.
REFERENCE_TOKENS = MAX_SHIFT_TOKENS
TERMINAL_SIGMA = 0.1

DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
STAGE_2_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)


def shift_for_tokens(tokens: int) -> float:
    slope = (MAX_SHIFT - BASE_SHIFT) / (MAX_SHIFT_TOKENS - BASE_SHIFT_TOKENS)
    intercept = BASE_SHIFT - slope * BASE_SHIFT_TOKENS
    return tokens * slope + intercept


def ltx2_sigmas(steps: int, *, tokens: int = REFERENCE_TOKENS, terminal: float = TERMINAL_SIGMA) -> torch.Tensor:
    """``steps + 1`` float32 sigmas from 1.0 down to ``terminal``, then 0.0.

    Needs at least 2 steps: with one, the only non-zero sigma is 1.0 and the terminal stretch divides
    by zero (the reference returns NaN there).
    """
    if steps < 2:
        raise ValueError(f"steps: must be at least 2 for the LTX-2 schedule; got {steps}")
    growth = math.exp(shift_for_tokens(tokens))
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    nonzero = sigmas != 0
    # The exponential time shift t -> e^mu / (e^mu + 1/t - 1), left at 0 for t = 0.
    sigmas = torch.where(nonzero, growth / (growth + (1 / sigmas - 1)), 0)
    # Stretch (1 - sigma) so the last non-zero sigma lands exactly on ``terminal``.
    distance_from_one = 1.0 - sigmas[nonzero]
    stretch = distance_from_one[-1] / (1.0 - terminal)
    sigmas[nonzero] = 1.0 - distance_from_one / stretch
    return sigmas.to(torch.float32)


def fixed_sigmas(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)
