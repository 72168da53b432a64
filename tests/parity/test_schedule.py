"""Sigma schedules: pipelines.schedule against ltx-core's LTX2Scheduler (called as Lightricks' pipelines call
it, without a latent) and ltx-pipelines' fixed distilled / stage-2 lists."""

from __future__ import annotations

import pytest
import torch

import tests.parity.reference  # noqa: F401  (before any ltx_core import)
from pipelines.schedule import DISTILLED_SIGMAS, STAGE_2_SIGMAS, ltx2_sigmas
from tests.parity.record import record

# float32 sigmas computed by the same formula on both sides: a few ulps of 1.0 at most.
SCHEDULE_TOLERANCE = 1e-6


def max_abs(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.double() - theirs.double()).abs().max().item()


@pytest.mark.parametrize("steps", [2, 3, 8, 20, 30, 40, 60])
def test_ltx2_sigmas_equal_the_reference_scheduler(steps):
    from ltx_core.components.schedulers import LTX2Scheduler

    ours = ltx2_sigmas(steps)
    theirs = LTX2Scheduler().execute(steps)
    assert ours.dtype == theirs.dtype == torch.float32
    diff = max_abs(ours, theirs)
    record(f"sigma schedule: ltx2_sigmas({steps})", diff, SCHEDULE_TOLERANCE)
    assert diff <= SCHEDULE_TOLERANCE
    assert len(ours) == steps + 1 and ours[-1] == 0.0


@pytest.mark.parametrize(
    "ours, name",
    [(DISTILLED_SIGMAS, "DISTILLED_SIGMA_VALUES"), (STAGE_2_SIGMAS, "STAGE_2_DISTILLED_SIGMA_VALUES")],
    ids=["distilled", "stage-2"],
)
def test_fixed_sigma_lists_equal_the_reference_constants(ours, name):
    from ltx_pipelines.utils import constants

    theirs = getattr(constants, name)
    assert len(ours) == len(theirs)
    diff = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    record(f"sigma schedule: fixed list = ltx_pipelines {name}", diff, 0)
    assert diff == 0
