"""``ltx2-server generate`` as a user runs it: a subprocess, a real worker child, a real mp4."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.support.api import SCRIPTED_MODEL
from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, make_png

COMMAND = [sys.executable, "-m", "server.cli", "generate"]


def run_generate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_tiny_model_writes_the_requested_mp4_with_plain_progress_lines(tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(make_png(96, 64))
    out = tmp_path / "nested" / "video.mp4"
    result = run_generate(
        "--image", str(image), "--prompt", "waves", "--width", "256", "--height", "288",
        "--num-frames", "17", "--fps", "8", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    info = probe_mp4(out)
    assert (info["width"], info["height"], info["frame_count"]) == (256, 288, 17)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and any("denoising" in line for line in lines)
    assert any(line.startswith("progress 100%") for line in lines)


def test_failure_on_a_terminal_draws_a_bar_and_exits_non_zero_with_the_error(tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(make_png())
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, "--model", SCRIPTED_MODEL, "--image", str(image), "--prompt", "please fail",
         "--width", "256", "--height", "256", "--num-frames", "9", "--out", str(tmp_path / "v.mp4")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=follower, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(120) == 1
    text = b"".join(chunks).decode()
    assert "\r[" in text and "#" in text and "denoising" in text
    assert "error: generation failed: RuntimeError: scripted failure" in text
    assert not (tmp_path / "v.mp4").exists()


def test_out_of_range_parameters_and_missing_files_are_refused_like_the_api(tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(make_png())
    result = run_generate("--image", str(image), "--prompt", "x", "--fps", "99", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and "fps: must be an integer from 1 to 30; got 99" in result.stderr
    result = run_generate("--image", str(tmp_path / "missing.png"), "--prompt", "x", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and "no such file" in result.stderr
    undecodable = tmp_path / "bad.png"
    undecodable.write_bytes(b"not an image")
    result = run_generate(
        "--model", SCRIPTED_MODEL, "--image", str(undecodable), "--prompt", "x", "--out", str(tmp_path / "v.mp4")
    )
    assert result.returncode == 2 and "image: cannot be decoded" in result.stderr


def test_help_lists_the_api_parameters_with_their_defaults_and_the_worker_options():
    out = subprocess.run([*COMMAND, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for flag in ("--image", "--prompt", "--negative-prompt", "--num-frames", "--guidance-scale", "--out", "--model"):
        assert flag in out
    assert "--webhook" not in out.replace("--webhook-", "")
    assert "[181]" in out and "[42]" in out


def test_ctrl_c_stops_the_job_prints_one_line_and_exits_130(tmp_path):
    import signal
    import time

    image = tmp_path / "in.png"
    image.write_bytes(make_png())
    out = tmp_path / "video.mp4"
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as stderr:
        # Its own process group, which a terminal's Ctrl-C signals as a whole (the worker child too).
        process = subprocess.Popen(
            [*COMMAND, "--model", SCRIPTED_MODEL, "--image", str(image), "--prompt", "hang",
             "--width", "256", "--height", "256", "--num-frames", "9", "--out", str(out)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "denoising" not in log_path.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text()
                time.sleep(0.1)
            started = time.monotonic()
            os.killpg(process.pid, signal.SIGINT)
            assert process.wait(20) == 130
            assert time.monotonic() - started < 10
        finally:
            if process.poll() is None:
                process.kill()
    text = log_path.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert [line for line in text.splitlines() if "interrupted" in line] == [
        "interrupted (Ctrl-C): the job was stopped, no video written"
    ]
    assert text.rstrip().endswith("no video written") and not out.exists()
