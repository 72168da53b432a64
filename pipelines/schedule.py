"""A flow-match scheduler whose resolution-dependent shift stays numerically sound at every size.

LTX-2 derives the schedule's shift ``mu`` from the video token count by extrapolating a line fitted
between 1,024 and 4,096 tokens. Large requests lie far beyond it (1280x1280x401 is 81,600 tokens,
mu ~ 30): the shifted sigmas round to 1.0 in float32, the terminal stretch divides by zero and the
whole schedule becomes NaN. We cap ``mu`` where the last sigma is still distinguishable from 1;
sizes up to ~30k tokens (the API's default 720x1280x181 is 22,080) keep their exact schedule.
"""

from __future__ import annotations

import math

from diffusers import FlowMatchEulerDiscreteScheduler

# Smallest 1 - sigma we let the stretch divide by: float32 resolves ~6e-8 near 1.0, so this keeps
# the stretched schedule accurate to about 1 %.
MIN_DISTANCE_FROM_ONE = 1e-5


def largest_stable_mu(num_steps: int) -> float:
    """The shift at which the last sigma before stretching sits MIN_DISTANCE_FROM_ONE below 1.

    The exponential shift maps t to e^mu / (e^mu + 1/t - 1); at the last step t = 1/num_steps.
    """
    spread = max(1, num_steps - 1)
    return math.log(spread) + math.log(1 / MIN_DISTANCE_FROM_ONE - 1)


class BoundedShiftScheduler(FlowMatchEulerDiscreteScheduler):
    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        if mu is not None:
            steps = len(sigmas) if sigmas is not None else (num_inference_steps or 1)
            mu = min(mu, largest_stable_mu(steps))
        return super().set_timesteps(
            num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps
        )


def with_bounded_shift(pipe) -> None:
    """Swap the pipeline's scheduler for the bounded one, keeping its configuration."""
    if not isinstance(pipe.scheduler, BoundedShiftScheduler):
        pipe.scheduler = BoundedShiftScheduler.from_config(pipe.scheduler.config)
