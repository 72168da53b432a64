"""A job's overall progress (0 to 1) from the worker's (stage, step, total_steps) reports.

Generators may report stages we do not know, or a stage again with another step count, so each new stage
*segment* (a new name, a new total, or a step count that starts over) gets a share of what is left, by its
weight against the usual stages still to come: progress never goes back, and only the end reaches 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

# The usual order of a generation, with rough shares of its time (denoising dominates on a GPU).
STANDARD_STAGES = dict(encoding_prompt=0.05, denoising=0.70, decoding_audio=0.02, decoding_video=0.18, muxing=0.05)
STAGE_NAMES = list(STANDARD_STAGES)
UNKNOWN_STAGE_WEIGHT = 0.05
# What a reported stage name holds to count as each standard stage, tried in this order.
_KEYS = dict(
    encoding_prompt="encod", denoising="denois", decoding_audio="decoding_audio", decoding_video="decod", muxing="mux"
)


def _category(stage: str) -> str | None:
    """The standard stage a reported one stands for ("stage2_denoising" is denoising), if any."""
    return next((standard for standard, key in _KEYS.items() if key in stage.lower()), None)


def _weight_after(category: str | None, last_standard_index: int) -> float:
    index = STAGE_NAMES.index(category) if category in STAGE_NAMES else last_standard_index
    return sum(STANDARD_STAGES[name] for name in STAGE_NAMES[index + 1 :])


@dataclass
class ProgressTracker:
    """Turns worker reports into a monotonic fraction; one per job, fed on the event loop thread."""

    progress: float = 0.0
    _segment_stage: str | None = None
    _segment_total: int = 0
    _segment_step: int = 0
    _segment_start: float = 0.0
    _segment_span: float = 0.0
    _last_standard_index: int = -1

    def report(self, stage: str, step: int, total_steps: int) -> float:
        if self._starts_new_segment(stage, step, total_steps):
            self._open_segment(stage, total_steps)
        self._segment_step = step
        fraction = min(1.0, max(0.0, step / total_steps)) if total_steps > 0 else 0.0
        candidate = self._segment_start + self._segment_span * fraction
        self.progress = max(self.progress, min(1.0, candidate))
        return self.progress

    def finish(self) -> float:
        self.progress = 1.0
        return self.progress

    def _starts_new_segment(self, stage: str, step: int, total_steps: int) -> bool:
        return stage != self._segment_stage or total_steps != self._segment_total or step < self._segment_step

    def _open_segment(self, stage: str, total_steps: int) -> None:
        category = _category(stage)
        weight = STANDARD_STAGES.get(category or "", UNKNOWN_STAGE_WEIGHT)
        after = _weight_after(category, self._last_standard_index)
        remaining = 1.0 - self.progress
        self._segment_stage = stage
        self._segment_total = total_steps
        self._segment_step = 0
        self._segment_start = self.progress
        self._segment_span = remaining * weight / (weight + after)
        if category in STAGE_NAMES:
            self._last_standard_index = max(self._last_standard_index, STAGE_NAMES.index(category))


def eta_seconds(progress: float, elapsed: float) -> float | None:
    """Seconds left for a running job, extrapolated from its own pace; None until there is a pace."""
    if progress <= 0.0 or elapsed <= 0.0:
        return None
    if progress >= 1.0:
        return 0.0
    return round(elapsed * (1.0 - progress) / progress, 1)


DURATION_SMOOTHING = 0.3


class DurationEstimator:
    """A moving average of how long jobs take to generate, for the ETA of queued jobs."""

    def __init__(self, smoothing: float = DURATION_SMOOTHING) -> None:
        self._smoothing = smoothing
        self.average: float | None = None

    def add(self, seconds: float) -> None:
        if self.average is None:
            self.average = seconds
        else:
            self.average += self._smoothing * (seconds - self.average)
