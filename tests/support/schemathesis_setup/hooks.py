"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by tests/e2e/test_openapi_schemathesis.py).

What a JSON Schema cannot say about a valid request is supplied here, for positive cases only
(negative ones go out exactly as schemathesis made them):
- `image` must be a picture (a URL the server can fetch, or image data): a schema-valid random
  string is rightly refused with 400. Positive cases get a small PNG as a data URI.
- `webhook` must be an http(s) URL the server may call: positive cases get one on loopback (a
  closed port; its delivery fails in the background, which no answer depends on).
- The scripted generator reads its script from the prompt ("crash", "hang", ...): those words are
  taken out, so a drawn prompt cannot kill or stall the worker.
- `num_frames` is capped at 8: only the time ffmpeg spends making the test video depends on it.
- `keyframes` get the same picture and frames inside the clip (1 .. num_frames - 1, each once): the
  schema cannot tie a keyframe's frame to `num_frames`.
- `loras` name the one LoRA the test server has (LORA_NAME), once: a name is only valid if the server has it.
Sizes, frame counts and prompts at their limits are covered by tests/e2e/test_fuzz.py and the contract tests.
"""

from __future__ import annotations

import schemathesis
from schemathesis import GenerationMode

from tests.support.servers import png_data_uri

I2V_PATHS = ("/v1/ltx-2-19b-i2v", "/v2/ltx-2-19b-i2v")
SUBMIT_PATHS = (*I2V_PATHS, "/v1/ltx-2-19b-t2v", "/v2/ltx-2-19b-t2v")
LORA_NAME = "style"
IMAGE = png_data_uri(16, 16)
WEBHOOK = "http://127.0.0.1:9/ltx2-webhook"
# The words tests.support.fixture_generators.ScriptedGenerator acts on.
SCRIPT_WORDS = ("steps", "oom", "crash", "fail", "hang", "unreadable", "badmux", "diskfull", "slow")


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path not in SUBMIT_PATHS or case.meta is None:
        return
    if case.meta.generation.mode is not GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return
    body = dict(case.body)
    if case.operation.path in I2V_PATHS:
        body["image"] = IMAGE
    if body.get("webhook"):
        body["webhook"] = WEBHOOK
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        while any(word in prompt for word in SCRIPT_WORDS):
            for word in SCRIPT_WORDS:
                prompt = prompt.replace(word, "x")
        body["prompt"] = prompt or "x"
    if isinstance(body.get("num_frames"), int):
        body["num_frames"] = min(body["num_frames"], 8)
    if isinstance(body.get("keyframes"), list):
        count = body.get("num_frames", 181)
        frames = range(1, int(count) if isinstance(count, (int, float)) and not isinstance(count, bool) else 181)
        keyframes = [item for item in body["keyframes"] if isinstance(item, dict)][: len(frames)]
        body["keyframes"] = [{**item, "image": IMAGE, "frame": frames[index]} for index, item in enumerate(keyframes)]
    if isinstance(body.get("loras"), list):
        body["loras"] = [{**item, "name": LORA_NAME} for item in body["loras"][:1] if isinstance(item, dict)]
    case.body = body
