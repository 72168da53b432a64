"""The ltx2-server console script as a user runs it: options, environment, start-up and shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from tests.support.api import SCRIPTED_MODEL
from tests.support.servers import REPO_ROOT, free_port, wait_until_ready


def test_every_option_has_an_environment_variable_in_help():
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option, env in [
        ("--model", "LTX2_MODEL"),
        ("--api-keys", "LTX2_API_KEYS"),
        ("--public-url", "LTX2_PUBLIC_URL"),
        ("--results-dir", "LTX2_RESULTS_DIR"),
        ("--ttl-seconds", "LTX2_TTL_SECONDS"),
        ("--max-queue", "LTX2_MAX_QUEUE"),
        ("--host", "LTX2_HOST"),
        ("--port", "LTX2_PORT"),
    ]:
        assert option in out and env in out


def test_bad_environment_value_is_a_clear_start_up_error():
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LTX2_PORT": "eighty"},
    )
    assert result.returncode != 0 and "LTX2_PORT" in result.stderr


def test_environment_configures_the_server_and_sigterm_to_the_group_stops_it_cleanly(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "LTX2_PORT": str(port),
        "LTX2_MODEL": SCRIPTED_MODEL,
        "LTX2_RESULTS_DIR": str(tmp_path),
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", 60, process)
            worker_pid = httpx.get(f"http://127.0.0.1:{port}/ready").json()["worker_pid"]
            # As `timeout`, Ctrl-C or a service manager would: the whole process group at once.
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text()
    assert "authentication is OFF" in text
    assert "restarting" not in text
    assert not os.path.exists(f"/proc/{worker_pid}") or "zombie" in open(f"/proc/{worker_pid}/status").read().lower()


def test_out_of_range_options_are_refused_before_anything_starts():
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--steps", "1", "--x264-crf", "60"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "steps: must be 2 or more" in result.stderr and "x264-crf: must be from 0 to 51" in result.stderr


def test_unknown_recipe_offload_dtype_and_model_are_refused_naming_the_choices():
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--recipe", "fast", "--offload", "disk", "--dtype", "int4"]
        + ["--model", "ltx-3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "recipe: must be one of auto, two-stage, one-stage, distilled; got 'fast'" in result.stderr
    assert "offload: must be one of auto, none, text-encoder, model, group, sequential; got 'disk'" in result.stderr
    assert "dtype: must be one of auto, bf16, fp16, fp32; got 'int4'" in result.stderr
    assert (
        "model: must be one of auto, ltx-2-19b, ltx-2.3-22b, ltx-2.5, tiny, tiny-2.3, tiny-2.5, or module:factory; "
        "got 'ltx-3'" in result.stderr
    )


def test_model_auto_serves_ltx_2_19b_only_when_the_weights_folder_holds_a_model(tmp_path):
    from server.settings import Settings

    assert Settings(model="auto", weights=str(tmp_path)).resolved_model() == "tiny"
    (tmp_path / "model_index.json").write_text("{}")
    assert Settings(model="auto", weights=str(tmp_path)).resolved_model() == "ltx-2-19b"
    assert Settings(model="tiny", weights=str(tmp_path)).resolved_model() == "tiny"


def test_each_generation_offers_its_own_recipes_and_guidance_at_start_up():
    from server.settings import Settings

    assert Settings(model="tiny-2.5").resolved_recipe() == "one-stage"
    assert Settings(model="tiny-2.3").resolved_recipe() == "two-stage"
    assert Settings(model="tiny-2.5", recipe="two-stage").problems() == [
        "recipe: tiny-2.5 offers one-stage; got 'two-stage'"
    ]
    assert Settings(model="tiny-2.3", guidance="ltx-2.0-release").problems() == [
        "guidance: tiny-2.3 offers ltx-pipelines; got 'ltx-2.0-release'"
    ]
    assert Settings(model="tiny-2.5").serves_test_model() and not Settings(model="ltx-2.5").serves_test_model()


def test_server_side_choices_mirror_the_pipelines_ones():
    import pipelines
    from pipelines.guidance import DEFAULT_GUIDANCE_POLICY, GUIDANCE_POLICIES
    from pipelines.loader import DTYPES
    from pipelines.offload import OFFLOAD_MODES
    from pipelines.recipes import RECIPES
    from server import settings

    assert settings.RECIPES == ("auto", *RECIPES) and settings.OFFLOAD_MODES == OFFLOAD_MODES
    assert settings.GUIDANCE_POLICIES == GUIDANCE_POLICIES
    assert settings.Settings().guidance == DEFAULT_GUIDANCE_POLICY
    assert settings.DTYPES == tuple(DTYPES)
    from pipelines.fp8 import FP8_MODES
    from pipelines.speed import ATTENTION_CHOICES, COMPILE_MODES
    from pipelines.stage2 import STAGE2_LORA_MODES

    assert (settings.FP8_MODES, settings.STAGE2_LORA_MODES) == (FP8_MODES, STAGE2_LORA_MODES)
    assert (settings.COMPILE_MODES, settings.ATTENTION_CHOICES) == (COMPILE_MODES, ATTENTION_CHOICES)
    chosen = settings.Settings()
    assert (chosen.compile, chosen.attention, chosen.fp8, chosen.stage2_lora) == ("off", "auto", "off", "adapter")
    assert set(settings.KNOWN_MODELS) - {"auto"} == set(pipelines.MODELS)


def test_a_missing_keys_file_is_a_start_up_error_not_a_key():
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--api-keys", "/etc/ltx2/no-such-keys.txt"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "api-keys: no keys file at /etc/ltx2/no-such-keys.txt" in result.stderr
