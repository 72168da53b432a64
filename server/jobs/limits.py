"""Per-key limits: the keys file's budgets, submissions per minute, and the request body size cap.

Keys file lines: ``KEY [label words] [jobs=N] [gpu-seconds=S] [rate=N]``; ``#`` starts a comment.
``jobs`` is how many jobs the key may submit, ``gpu-seconds`` how many seconds of generation its
jobs may use, ``rate`` its own submissions-per-minute limit (else ``--rate-limit``). Budgets live in
memory: a restart gives every key its full budget again.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import overload

from server.clock import Clock
from server.errors import BodyTooLarge, InsufficientCredits, RateLimited, http_status_for_class

RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class KeyPolicy:
    key: str
    label: str = ""
    jobs: int | None = None
    gpu_seconds: float | None = None
    rate: int | None = None


def load_key_policies(api_keys: str) -> dict[str, KeyPolicy]:
    """``--api-keys``: a comma list of bare keys, or the path of a keys file."""
    raw = api_keys.strip()
    if not raw:
        return {}
    path = Path(raw).expanduser()
    if path.is_file():
        lines = path.read_text().splitlines()
        policies = [parse_key_line(line, f"{path}:{n}") for n, line in enumerate(lines, 1)]
        return {policy.key: policy for policy in policies if policy is not None}
    if _looks_like_a_path(raw):
        # A mistyped keys-file path must not silently become the one valid key.
        raise ValueError(f"no keys file at {raw} (to pass keys themselves, give a comma list)")
    return {key: KeyPolicy(key) for key in (part.strip() for part in raw.split(",")) if key}


def _looks_like_a_path(value: str) -> bool:
    return "," not in value and (value.startswith(("/", "./", "../", "~")) or value.endswith((".txt", ".keys")))


def parse_key_line(line: str, where: str = "") -> KeyPolicy | None:
    text = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
    if not text:
        return None
    key, *rest = text.split()
    label_words: list[str] = []
    limits: dict[str, float] = {}
    for word in rest:
        name, sep, value = word.partition("=")
        if sep and name in ("jobs", "gpu-seconds", "rate"):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{where}: {name} must be a number; got {value!r}") from None
            if number < 0 or not math.isfinite(number):
                raise ValueError(f"{where}: {name} must be 0 or more; got {value!r}")
            limits[name] = number
        else:
            label_words.append(word)
    jobs, rate = (int(limits[name]) if name in limits else None for name in ("jobs", "rate"))
    return KeyPolicy(key, " ".join(label_words), jobs=jobs, gpu_seconds=limits.get("gpu-seconds"), rate=rate)


def utc_text(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@overload
def owner_id(key: str) -> str: ...
@overload
def owner_id(key: None) -> None: ...
def owner_id(key: str | None) -> str | None:
    """A digest of the key: the key itself is never stored with a job (any replica or worker host reads records)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key is not None else None


def rate_limited(limit: int, reset_at: float, now: float) -> RateLimited:
    when = utc_text(reset_at)
    headers = {"Retry-After": str(max(1, math.ceil(reset_at - now))), "x-rate-limit-reset-at-utc": when}
    message = f"rate limit: at most {limit} submissions per minute for this key; retry after {when}"
    return RateLimited(message, headers=headers)


def credits_spent(policy: KeyPolicy, which: str) -> InsufficientCredits:
    budget = f"{policy.jobs} jobs" if which == "jobs" else f"{policy.gpu_seconds:g} GPU seconds"
    return InsufficientCredits(f"Insufficient credits: this key's budget of {budget} is spent")


class LocalLimits:
    """One API process's rate limits (per key, a sliding 60-second window) and budgets (jobs, generation seconds)."""

    def __init__(self, policies: dict[str, KeyPolicy], default_per_minute: int, clock: Clock) -> None:
        self._policies = policies
        self._default = default_per_minute
        self._clock = clock
        self._recent: dict[str | None, deque[float]] = {}
        self._jobs: dict[str, int] = {}
        self._seconds: dict[str, float] = {}

    async def admit(self, key: str | None) -> None:
        policy = self._policies.get(key) if key is not None else None
        self._count_submission(key, self._default if policy is None or policy.rate is None else policy.rate)
        if key is None or policy is None:
            return
        jobs = self._jobs.get(key, 0)
        if policy.jobs is not None and jobs >= policy.jobs:
            raise credits_spent(policy, "jobs")
        if policy.gpu_seconds is not None and self._seconds.get(key, 0.0) >= policy.gpu_seconds:
            raise credits_spent(policy, "seconds")
        self._jobs[key] = jobs + 1

    def _count_submission(self, key: str | None, limit: int) -> None:
        if limit <= 0:
            return
        now = self._clock.now()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - RATE_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= limit:
            raise rate_limited(limit, reset_at=recent[0] + RATE_WINDOW_SECONDS, now=now)
        recent.append(now)

    async def refund(self, key: str | None) -> None:
        """Give back the job charged by ``admit`` when the submission was refused after all."""
        if key is not None and self._jobs.get(key, 0) > 0:
            self._jobs[key] -= 1

    def charges_seconds_here(self, key: str | None) -> bool:
        policy = self._policies.get(key) if key is not None else None
        return policy is not None and policy.gpu_seconds is not None

    def charge_seconds(self, key: str | None, seconds: float) -> None:
        if key is not None and key in self._policies:
            self._seconds[key] = self._seconds.get(key, 0.0) + max(0.0, seconds)


class BodySizeLimit:
    """ASGI middleware: a request body past ``max_bytes`` gets 413 before it is read into memory."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        too_large = False

        async def counting_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # A chunked body with no length: stop reading; whatever the app answers to the
                    # error is replaced by the 413 below.
                    too_large = True
                    raise BodyTooLarge(self._message())
            return message

        refused = False

        async def replacing_send(message) -> None:
            nonlocal refused
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start" and not refused:
                refused = True
                await self._refuse(send)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except BodyTooLarge:
            if not too_large:
                raise
            if not refused:
                await self._refuse(send)

    def _message(self) -> str:
        return f"request body is larger than the {self.max_bytes} byte limit"

    async def _refuse(self, send) -> None:
        body = ('{"error": "%s"}' % self._message()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": http_status_for_class(BodyTooLarge), "headers": headers})
        await send({"type": "http.response.body", "body": body})
