"""Server settings: the only place that reads ``LTX2_*`` environment variables.

Every option is a command-line flag and an environment variable with the same name, upper-cased, ``-``
as ``_``, prefixed ``LTX2_`` (``--max-queue`` is ``LTX2_MAX_QUEUE``). Flags win over the environment;
the environment wins over the defaults below.

Options are grouped by what they configure (``GROUP_COMMANDS``), and each command offers the flags of
its own groups only. Every command reads every ``LTX2_*`` variable, so one environment configures a whole
deployment; an option a command does not offer keeps its environment value or its default there
(``generate`` still honours, say, ``LTX2_JOB_TIMEOUT``), and all values are validated the same way.
"""

from __future__ import annotations

import os
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Mapping

from pipelines.generations import ALL_RECIPES, Generation, detect_generation, generation, model_names
from server.workers.devices import gpus_problem

ENV_PREFIX = "LTX2_"
# The generations table (pipelines.generations) is torch-free: the API process reads it to check --model.
KNOWN_MODELS = ("auto", *model_names())
RECIPES = ("auto", *ALL_RECIPES)
# Mirrors of pipelines' choices (the API process never imports torch-bound pipelines modules; a test keeps them equal).
GUIDANCE_POLICIES = ("ltx-pipelines", "ltx-2.0-release")
OFFLOAD_MODES = ("auto", "none", "text-encoder", "model", "group", "sequential")
FP8_MODES = ("off", "storage", "compute")
STAGE2_LORA_MODES = ("adapter", "merged", "merged-fp8")
COMPILE_MODES = ("off", "regional")
ATTENTION_CHOICES = ("auto", "sdpa", "cudnn", "flash4", "sage")
DTYPES = ("auto", "bf16", "fp16", "fp32")
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


# What a setting configures (each Settings field's metadata["group"]), and which commands offer it as a flag.
SERVE, WORKER, GENERATE = "serve", "worker", "generate"
MODEL, WORKERS, STORE, HTTP = "model and generation", "worker processes", "job store and results", "HTTP API"
LIMITS, IMAGES, WEBHOOKS, LOGGING = "limits", "input images", "webhooks", "logging"
GROUP_COMMANDS: dict[str, tuple[str, ...]] = {
    MODEL: (SERVE, WORKER, GENERATE),  # what each worker loads and how it generates
    WORKERS: (SERVE, WORKER),  # the worker processes of a host: count, threads, time limits
    STORE: (SERVE, WORKER),  # where jobs, the queue and results live (shared by replicas and worker hosts)
    HTTP: (SERVE,),  # listening, authentication, URLs in responses, slow clients
    LIMITS: (SERVE,),  # the queue, per-key rates, prompt length
    IMAGES: (SERVE,),  # fetching and decoding input images
    WEBHOOKS: (SERVE,),  # signing and delivering webhooks
    LOGGING: (SERVE, WORKER),
}


def parse_plan_size(text: str) -> tuple[int, int, int] | None:
    """``720x1280x181`` as (width, height, num_frames); None when malformed or not positive."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        return None
    width, height, frames = (int(part) for part in parts)
    return width, height, frames


def option(
    group: str, default: object, help: str, *, brief: str = "", commands: tuple[str, ...] | None = None, bare: str = ""
) -> Any:
    """A Settings field; ``brief``: a shorter help for ``--help``; ``commands``: narrower than its group's;
    ``bare``: the value of the flag given with no value (``--fp8`` alone, as it was a switch before)."""
    metadata = {"group": group, "help": help, "brief": brief, "commands": commands, "bare": bare}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    model: str = option(
        MODEL,
        "auto",
        "ltx-2-19b, ltx-2.3-22b or ltx-2.5 (from --weights: docs/generations.md), tiny, tiny-2.3 or tiny-2.5 "
        "(offline random-weight test models of each generation), auto (the generation --weights holds, "
        "recognised from its metadata, else tiny), or module:factory (a custom generator from a Python module)",
        brief="ltx-2-19b, ltx-2.3-22b, ltx-2.5, tiny[-2.3|-2.5] (test models), auto (from --weights), module:factory",
    )
    weights: str = option(
        MODEL,
        "weights",
        "folder holding the model's weights (scripts/download_weights.py --model NAME fills and checks it)",
        brief="folder holding the model's weights",
    )
    recipe: str = option(
        MODEL,
        "auto",
        "two-stage (Lightricks' recommended), one-stage, or distilled (fastest); auto: the generation's first "
        "(two-stage; one-stage for LTX-2.5, its only recipe)",
        brief="auto (the generation's own), two-stage, one-stage or distilled",
    )
    guidance: str = option(
        MODEL,
        "ltx-pipelines",
        "guidance policy: ltx-pipelines (Lightricks' ltx-pipelines 1.0 defaults: CFG + STG + modality guidance, "
        "audio CFG 7) or ltx-2.0-release (plain CFG for video and audio, as LTX-2.0 first shipped); the request's"
        " guidance_scale is the video CFG scale under both",
        brief="ltx-pipelines (CFG + STG + modality guidance) or ltx-2.0-release (plain CFG)",
    )
    steps: int = option(
        MODEL,
        0,
        "denoising steps of one-stage and of two-stage's first stage, 2 or more (0: the model's own: 40 for "
        "ltx-2-19b, 2 for tiny); the distilled stages have fixed steps",
        brief="denoising steps, 2 or more (0: the model's own)",
    )
    device: str = option(
        MODEL,
        "auto",
        "torch device: auto (cuda if present), cuda, cuda:N or cpu",
        brief="auto (cuda if present), cuda, cuda:N or cpu",
    )
    dtype: str = option(
        MODEL,
        "auto",
        "auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32",
        brief="auto (bf16 on CUDA), bf16, fp16 or fp32",
    )
    offload: str = option(
        MODEL,
        "auto",
        "auto (from free VRAM), none, text-encoder, model, group or sequential: where weights wait",
        brief="where weights wait: auto (from free VRAM), none, text-encoder, model, group or sequential",
    )
    plan_size: str = option(
        MODEL,
        "",
        "the largest request WIDTHxHEIGHTxFRAMES that --offload auto budgets activation memory for ('': the "
        "API's default request, 720x1280x181)",
        brief="largest request --offload auto budgets for, WxHxF ('': 720x1280x181)",
        commands=(SERVE, WORKER),
    )
    fp8: str = option(
        MODEL,
        "off",
        "float8 transformer weights: off, storage (half the memory, matmuls in bf16: near-lossless) or compute "
        "(float8 matmuls too: faster on Hopper GPUs, lossy); docs/gpus-and-memory.md",
        brief="off, storage (float8 weights) or compute (float8 matmuls too, lossy)",
        bare="storage",
    )
    stage2_lora: str = option(
        MODEL,
        "adapter",
        "the distilled LoRA of two-stage's second stage: adapter (applied per layer), merged (into a second "
        "resident transformer at load: faster, more memory) or merged-fp8 (that copy in float8)",
        brief="adapter, merged or merged-fp8 (second stage's LoRA)",
        commands=(SERVE, WORKER),  # generate reads them from LTX2_* (its --help stays one screen)
    )
    compile: str = option(
        MODEL,
        "off",
        "off, or regional (torch.compile of the transformer's repeated block: slower start, faster steps)",
        brief="off or regional (torch.compile the transformer block)",
        commands=(SERVE, WORKER),  # generate reads them from LTX2_* (its --help stays one screen)
    )
    attention: str = option(
        MODEL,
        "auto",
        "attention kernel: auto (PyTorch SDPA), sdpa, cudnn, flash4 (flash-attn-4, Hopper+) or sage "
        "(SageAttention 2: approximate, lossy)",
        brief="auto, sdpa, cudnn, flash4 or sage (lossy)",
        commands=(SERVE, WORKER),  # generate reads them from LTX2_* (its --help stays one screen)
    )
    decode_chunk_frames: int = option(
        MODEL,
        48,
        "frames the video VAE decodes at a time (0: the whole clip in one pass: fewer convolutions, more memory)",
        brief="VAE decode chunk in frames (0: one pass)",
        commands=(SERVE, WORKER),  # generate reads them from LTX2_* (its --help stays one screen)
    )
    negative_prompt_cache: bool = option(
        MODEL,
        True,
        "keep the last few negative prompts' embeddings, so a repeated one is not encoded again (identical output)",
        brief="reuse repeated negative prompts' embeddings",
        commands=(SERVE, WORKER),  # generate reads them from LTX2_* (its --help stays one screen)
    )
    loras: str = option(
        MODEL,
        "",
        "folder of LoRA .safetensors files a request may apply by name (\"loras\": [{\"name\", \"scale\"}]); "
        "listed by GET /v1/loras; empty: none",
        brief="folder of LoRAs requests may apply (empty: none)",
    )
    moderation: str = option(
        MODEL,
        "",
        "content policy (docs/security.md#content-policy): wordlist (the built-in prompt word list), "
        "wordlist:FILE (the built-in list plus the terms in FILE, one per line) or module:factory of a checker "
        "called on the prompt and input images before generation and on sampled output frames after (a refusal "
        'fails the job: 422 "content blocked: <reason>"); empty: none',
        brief="content policy: wordlist, wordlist:FILE or module:factory (empty: none)",
        commands=(SERVE, WORKER),
    )
    x264_preset: str = option(
        MODEL,
        "",
        "x264 speed/size preset for the mux (default: the model's own: veryfast for ltx-2-19b, ultrafast for tiny)",
        brief="x264 preset ('': the model's own)",
    )
    x264_crf: int = option(
        MODEL,
        -1,
        "x264 CRF 0-51, lower is better and bigger (-1: the model's own: 19 for ltx-2-19b, 36 for tiny, whose "
        "frames are noise)",
        brief="x264 CRF 0-51, lower: better (-1: model's own)",
    )
    gpus: str = option(
        WORKERS,
        "",
        "workers per host: empty (one, on --device), all (one per NVIDIA GPU), GPU indices like 0,2,3 (one each),"
        " or cpu:N (N CPU workers, for tests); overrides --device",
    )
    worker_threads: int = option(
        WORKERS, 0, "CPU threads per worker (torch, OpenMP, BLAS; 0: torch's default; cpu:N splits the cores N ways)"
    )
    worker_nice: int = option(WORKERS, 10, "CPU niceness of the worker, so the API answers promptly while it computes")
    overlap_mux: str = option(
        WORKERS,
        "auto",
        "on: a worker starts its next job once this one's frames are decoded, while ffmpeg finishes its video; "
        "off: one job at a time, start to end; auto: off until the overlap is measured on a GPU (on the CPU the "
        "encode and the next denoising share the cores)",
        brief="start the next job while this one's video is encoded: auto (off for now), on or off",
    )
    worker_start_timeout: float = option(
        WORKERS, 600.0, "seconds the worker may take to load; one not ready by then is killed and restarted"
    )
    job_timeout: float = option(
        WORKERS, 1800.0, "seconds a job may run; past it the job fails (timed out) and the worker restarts (0: none)"
    )
    cancel_grace: float = option(
        WORKERS, 30.0, "seconds a cancelled running job has to stop at a step boundary before its worker is restarted"
    )
    shutdown_grace: float = option(WORKERS, 60.0, "on SIGTERM, seconds a running job has to finish before it is failed")
    store: str = option(
        STORE,
        "memory",
        "memory (one host), or redis://HOST:PORT/DB (also rediss://, unix://): jobs, queue and limits in Redis, "
        "shared by API replicas (serve) and worker hosts (worker); --results-dir must then be a path they all "
        "share, unless --results-s3 names a bucket",
    )
    visibility_timeout: float = option(
        STORE, 60.0, "--store redis: seconds without a heartbeat before a job's worker counts as dead; another gets it"
    )
    max_deliveries: int = option(STORE, 3, "--store redis: deliveries of a job whose worker keeps dying, then it FAILS")
    results_dir: str = option(
        STORE,
        "",
        "where inputs and videos are kept, a path every host shares when several do (default: a temp dir, removed"
        " at exit); files 0600, folders 0700",
    )
    results_group_readable: bool = option(
        STORE, False, "results readable by the server's group too: files 0640, folders 0750 (default: 0600, 0700)"
    )
    results_s3: str = option(STORE, "", "s3://bucket/prefix: results in a bucket, presigned URLs (empty: results-dir)")
    s3_endpoint_url: str = option(STORE, "", "endpoint of an S3-compatible store (MinIO, R2...); empty: AWS")
    ttl_seconds: float = option(
        STORE, 3600.0, "how long a job and its files are kept, from submission; a job still queued then FAILS (expired)"
    )
    # The expiry sweep runs in the API process only.
    sweep_interval: float = option(STORE, 30.0, "seconds between expiry sweeps", commands=(SERVE,))
    host: str = option(HTTP, "127.0.0.1", "address to bind")
    port: int = option(HTTP, 8000, "port to bind")
    api_keys: str = option(
        HTTP,
        "",
        "comma-separated API keys, or the path of a file with one key per line ('#' comments; a label and budgets"
        " such as jobs=, gpu-seconds=, rate= may follow the key; a value that looks like a path but names no file"
        " is a start-up error, never a key); empty: auth off, with a warning at start-up",
    )
    public_url: str = option(
        HTTP, "", "base of absolute URLs in responses, e.g. https://gpu.example.com behind a proxy (else the request's)"
    )
    trust_forwarded_headers: bool = option(
        HTTP, False, "build absolute URLs from X-Forwarded-Proto/-Host/-Prefix (only behind a proxy that sets them)"
    )
    allowed_hosts: str = option(
        HTTP,
        "",
        "comma-separated host names clients use to reach the server (*.example.com: its subdomains, not "
        "example.com itself; IP addresses, IPv6 in brackets; no ports); other Host headers get 400 (empty: any "
        "well-formed Host; a malformed one is ignored for absolute URLs)",
    )
    sync_timeout: float = option(HTTP, 1800.0, "seconds a /v1 call waits before 504")
    max_body_bytes: int = option(HTTP, 32 * 1024 * 1024, "largest request body, in bytes; more gets 413")
    header_timeout: float = option(
        HTTP, 10.0, "seconds to send a request's headers (from its first byte, or connecting); slower gets 408, closed"
    )
    body_timeout: float = option(
        HTTP, 120.0, "seconds a client may take to send a body after its headers; slower gets 408 and is closed"
    )
    max_queue: int = option(LIMITS, 100, "most jobs waiting; beyond it submissions get 429")
    rate_limit: int = option(
        LIMITS, 0, "submissions per minute per API key, more get 429 (0: no limit; with auth off all share one limit)"
    )
    max_prompt_chars: int = option(
        LIMITS, 10000, "longest prompt, 1-10000 characters (negative_prompt: capped at 10000)"
    )
    max_image_bytes: int = option(IMAGES, 20 * 1024 * 1024, "largest input image, in bytes")
    image_timeout: float = option(IMAGES, 30.0, "seconds to fetch an image URL, in all (redirects included)")
    image_connect_timeout: float = option(
        IMAGES, 10.0, "seconds to resolve and connect to an image URL's host (each address tried gets its own)"
    )
    image_max_redirects: int = option(IMAGES, 5, "redirects followed per image URL, each re-checked")
    max_image_fetches: int = option(
        IMAGES,
        8,
        "image URLs downloaded at once (each may hold about twice --max-image-bytes in memory while it is fetched"
        " and checked); submissions of a URL beyond it get 429",
    )
    max_image_pixels: int = option(
        IMAGES, 64000000, "most pixels (width x height) of an input image, read from its header (decompression bombs)"
    )
    block_private_image_urls: bool = option(
        IMAGES, False, "refuse image URLs on private and loopback addresses (link-local/metadata: always refused)"
    )
    webhook_secret: str = option(
        WEBHOOKS, "", "key that signs webhook bodies (HMAC-SHA256); empty: submissions with a webhook get 400"
    )
    webhook_timeout: float = option(WEBHOOKS, 10.0, "seconds one webhook attempt may take")
    webhook_retries: int = option(WEBHOOKS, 5, "further webhook attempts after a failed one")
    webhook_backoff: float = option(WEBHOOKS, 1.0, "seconds before the first webhook retry, then doubling (up to 300)")
    log_level: str = option(LOGGING, "info", "debug, info, warning or error")
    log_format: str = option(LOGGING, "text", "text, or json: one JSON object per line, with the request id")

    def parsed_api_keys(self) -> frozenset[str]:
        """Keys from a comma list, or from a file (one per line, '#' comments, optional label and budgets)."""
        from server.jobs.limits import load_key_policies  # (limits needs nothing from here: no cycle)

        return frozenset(load_key_policies(self.api_keys))

    @property
    def shared_store(self) -> bool:
        return self.store != "memory"

    def resolved_model(self) -> str:
        """``auto`` becomes the generation the weights folder holds (its metadata says which), else tiny."""
        if self.model != "auto":
            return self.model
        return detect_generation(self.weights) or "tiny"

    def served_generation(self) -> Generation | None:
        """The generation this host's workers run; None for a custom module:factory generator."""
        model = self.resolved_model()
        return None if ":" in model else generation(model)

    def resolved_recipe(self) -> str:
        served = self.served_generation()
        if self.recipe != "auto":
            return self.recipe
        return served.recipes[0] if served else "two-stage"

    def serves_test_model(self) -> bool:
        """Workers here run a random-weight tiny model (``tiny*``, or ``auto`` without weights)."""
        served = self.served_generation()
        return served is not None and served.is_tiny

    def test_model_warning(self) -> str:
        return (
            f"serving the tiny test model: its videos are random noise; put LTX-2 weights in {self.weights} "
            "or pass --weights DIR"
        )

    def _generation_problems(self) -> list[tuple[bool, str]]:
        """The recipe and guidance the served generation offers (known once --model is)."""
        if self.model not in KNOWN_MODELS or self.recipe not in RECIPES or self.guidance not in GUIDANCE_POLICIES:
            return []
        served = self.served_generation()
        if served is None:
            return []
        recipe, names = self.resolved_recipe(), served.guidance_names
        return [
            (
                recipe in served.recipes,
                f"recipe: {served.name} offers {', '.join(served.recipes)}; got {recipe!r}",
            ),
            (
                self.guidance in names,
                f"guidance: {served.name} offers {', '.join(names)}; got {self.guidance!r}",
            ),
        ]

    def _lora_folder_problems(self) -> list[tuple[bool, str]]:
        from pipelines.lora_files import LoraFolderError, list_loras

        try:
            list_loras(self.loras)
        except (LoraFolderError, OSError) as error:
            return [(False, str(error))]
        return []

    def problems(self) -> list[str]:
        checks = [
            (1 <= self.port <= 65535, f"port: must be from 1 to 65535; got {self.port}"),
            (self.ttl_seconds > 0, f"ttl-seconds: must be more than 0; got {self.ttl_seconds:g}"),
            (self.max_queue >= 1, f"max-queue: must be 1 or more; got {self.max_queue}"),
            (self.sync_timeout > 0, f"sync-timeout: must be more than 0; got {self.sync_timeout:g}"),
            (self.sweep_interval > 0, f"sweep-interval: must be more than 0; got {self.sweep_interval:g}"),
            (-1 <= self.x264_crf <= 51, f"x264-crf: must be from 0 to 51, or -1; got {self.x264_crf}"),
            (self.steps == 0 or self.steps >= 2, f"steps: must be 2 or more, or 0; got {self.steps}"),
            (self.max_image_bytes >= 1, f"max-image-bytes: must be 1 or more; got {self.max_image_bytes}"),
            (self.image_timeout > 0, f"image-timeout: must be more than 0; got {self.image_timeout:g}"),
            (-20 <= self.worker_nice <= 19, f"worker-nice: must be from -20 to 19; got {self.worker_nice}"),
            (
                self.overlap_mux in ("auto", "on", "off"),
                f"overlap-mux: must be auto, on or off; got {self.overlap_mux!r}",
            ),
            (
                self.model in KNOWN_MODELS or ":" in self.model,
                f"model: must be one of {', '.join(KNOWN_MODELS)}, or module:factory; got {self.model!r}",
            ),
            (self.recipe in RECIPES, f"recipe: must be one of {', '.join(RECIPES)}; got {self.recipe!r}"),
            (
                self.guidance in GUIDANCE_POLICIES,
                f"guidance: must be one of {', '.join(GUIDANCE_POLICIES)}; got {self.guidance!r}",
            ),
            *self._generation_problems(),
            *self._lora_folder_problems(),
            (
                self.offload in OFFLOAD_MODES,
                f"offload: must be one of {', '.join(OFFLOAD_MODES)}; got {self.offload!r}",
            ),
            (self.dtype in DTYPES, f"dtype: must be one of {', '.join(DTYPES)}; got {self.dtype!r}"),
            *(
                (value in choices, f"{name.replace('_', '-')}: must be one of {', '.join(choices)}; got {value!r}")
                for name, value, choices in (
                    ("fp8", self.fp8, FP8_MODES),
                    ("stage2_lora", self.stage2_lora, STAGE2_LORA_MODES),
                    ("compile", self.compile, COMPILE_MODES),
                    ("attention", self.attention, ATTENTION_CHOICES),
                )
            ),
            (
                self.plan_size == "" or parse_plan_size(self.plan_size) is not None,
                f"plan-size: must be WIDTHxHEIGHTxFRAMES like 720x1280x181; got {self.plan_size!r}",
            ),
            (self.decode_chunk_frames >= 0, f"decode-chunk-frames: must be 0 or more; got {self.decode_chunk_frames}"),
            (
                self.image_connect_timeout > 0,
                f"image-connect-timeout: must be more than 0; got {self.image_connect_timeout:g}",
            ),
            (
                0 <= self.image_max_redirects <= 20,
                f"image-max-redirects: must be from 0 to 20; got {self.image_max_redirects}",
            ),
            (self.max_image_pixels >= 1, f"max-image-pixels: must be 1 or more; got {self.max_image_pixels}"),
            (self.max_image_fetches >= 1, f"max-image-fetches: must be 1 or more; got {self.max_image_fetches}"),
            (self.max_body_bytes >= 1024, f"max-body-bytes: must be 1024 or more; got {self.max_body_bytes}"),
            (self.header_timeout > 0, f"header-timeout: must be more than 0; got {self.header_timeout:g}"),
            (self.body_timeout > 0, f"body-timeout: must be more than 0; got {self.body_timeout:g}"),
            (
                1 <= self.max_prompt_chars <= 10_000,
                f"max-prompt-chars: must be from 1 to 10000; got {self.max_prompt_chars}",
            ),
            (self.rate_limit >= 0, f"rate-limit: must be 0 or more; got {self.rate_limit}"),
            (self.job_timeout >= 0, f"job-timeout: must be 0 or more; got {self.job_timeout:g}"),
            (self.cancel_grace > 0, f"cancel-grace: must be more than 0; got {self.cancel_grace:g}"),
            (self.shutdown_grace >= 0, f"shutdown-grace: must be 0 or more; got {self.shutdown_grace:g}"),
            (self.webhook_timeout > 0, f"webhook-timeout: must be more than 0; got {self.webhook_timeout:g}"),
            (self.webhook_retries >= 0, f"webhook-retries: must be 0 or more; got {self.webhook_retries}"),
            (self.webhook_backoff >= 0, f"webhook-backoff: must be 0 or more; got {self.webhook_backoff:g}"),
            (gpus_problem(self.gpus) is None, gpus_problem(self.gpus) or ""),
            (self.worker_threads >= 0, f"worker-threads: must be 0 or more; got {self.worker_threads}"),
            (self.log_format in ("text", "json"), f"log-format: must be text or json; got {self.log_format!r}"),
            (
                self.store == "memory" or self.store.startswith(REDIS_URL_SCHEMES),
                f"store: must be memory, or a Redis URL (redis://HOST:PORT/DB, rediss://, unix://); got {self.store!r}",
            ),
            (
                self.visibility_timeout >= 1,
                f"visibility-timeout: must be 1 second or more; got {self.visibility_timeout:g}",
            ),
            (1 <= self.max_deliveries <= 100, f"max-deliveries: must be from 1 to 100; got {self.max_deliveries}"),
            (
                not self.shared_store or bool(self.results_dir) or bool(self.results_s3),
                "results-dir: must be set with --store redis (a path that every API replica and worker host shares), "
                "unless --results-s3 names a bucket",
            ),
            (
                self.shared_store or not self.results_s3,
                "results-s3: is only used with --store redis://... (one host keeps results in --results-dir)",
            ),
        ]
        return (
            [message for ok, message in checks if not ok]
            + self._key_file_problems()
            + self._s3_problems()
            + self._allowed_hosts_problems()
            + self._moderation_problems()
        )

    def parsed_allowed_hosts(self) -> tuple[str, ...]:
        return tuple(name.strip().lower() for name in self.allowed_hosts.split(",") if name.strip())

    def _allowed_hosts_problems(self) -> list[str]:
        from server.api.hosts import allowed_host_pattern_problem  # (hosts needs nothing from here)

        found = [allowed_host_pattern_problem(name) for name in self.parsed_allowed_hosts()]
        return [f"allowed-hosts: {problem}" for problem in found if problem]

    def _moderation_problems(self) -> list[str]:
        """The --moderation value's form and word list; a module:factory is imported by the workers alone (it may
        import torch), so a failing import is their start-up error."""
        from pipelines.moderation import spec_problem

        problem = spec_problem(self.moderation)
        return [f"moderation: {problem}"] if problem else []

    def _key_file_problems(self) -> list[str]:
        try:
            self.parsed_api_keys()
        except (ValueError, OSError) as exc:
            return [f"api-keys: {exc}"]
        return []

    def _s3_problems(self) -> list[str]:
        from server.storage.results import check_endpoint_url, parse_s3_url  # (results needs nothing from here)

        found = []
        for name, value, check in (
            ("results-s3", self.results_s3, parse_s3_url),
            ("s3-endpoint-url", self.s3_endpoint_url, check_endpoint_url),
        ):
            try:
                if value:
                    check(value)
            except ValueError as exc:
                found.append(f"{name}: {exc}")
        if self.s3_endpoint_url and not self.results_s3:
            found.append("s3-endpoint-url: is only used with results-s3; set results-s3 too or leave it empty")
        return found


def command_fields(command: str) -> list[Field]:
    """The settings ``command`` offers as flags, in declaration order (which is group order)."""
    return [f for f in fields(Settings) if command in (f.metadata["commands"] or GROUP_COMMANDS[f.metadata["group"]])]


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _coerce(value: str, template: object) -> object:
    if isinstance(template, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(template, int):
        return int(value)
    if isinstance(template, float):
        return float(value)
    return value


def settings_from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then ``LTX2_*`` variables, then explicit overrides (the CLI's flags)."""
    environ = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        if name in environ:
            try:
                values[f.name] = _coerce(environ[name], getattr(base, f.name))
            except ValueError as exc:
                raise SystemExit(f"{name}={environ[name]!r}: {exc}") from None
    values.update({key: value for key, value in overrides.items() if value is not None})
    return replace(base, **values)
