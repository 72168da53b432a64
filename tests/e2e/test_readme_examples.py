"""The README's examples run as written: its segmind SDK (python) and curl (sh) blocks, read from README.md
itself, run against a real ``ltx2-server serve`` on loopback, from a folder holding only the shipped
examples/portrait.png. The only change made to them is the server's address (their port 8000 becomes
the test server's free port).

The server runs the fast fixture generator, so the SDK example's 720x1280x181 request takes milliseconds.
"""

from __future__ import annotations

import ast
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lora_files import write_tiny_lora_file
from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, cli_server

pytestmark = pytest.mark.e2e

README = REPO_ROOT / "README.md"
EXAMPLE_IMAGE = REPO_ROOT / "examples" / "portrait.png"
FAST_MODEL = "tests.support.fixture_generators:fast"
README_ADDRESS = "http://127.0.0.1:8000"
SDK_CALLS = (".submit_async", ".wait", ".run_sync")


def readme_block(heading: str, language: str) -> str:
    """The first fenced ``language`` block in the README section under ``## heading``."""
    text = README.read_text(encoding="utf-8")
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, f"README has no '## {heading}' section"
    block = re.search(rf"^```{language}\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, f"README's '{heading}' section has no ```{language} block"
    return block.group(1)


README_LORA = "camera-dolly-in"  # the LoRA the README's examples apply


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    loras = tmp_path_factory.mktemp("loras")
    write_tiny_lora_file(loras / f"{README_LORA}.safetensors")
    with cli_server("--model", FAST_MODEL, "--loras", str(loras)) as (base_url, _):
        yield base_url


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder laid out like the repository as far as the examples look: examples/portrait.png."""
    (tmp_path / "examples").mkdir()
    shutil.copyfile(EXAMPLE_IMAGE, tmp_path / "examples" / "portrait.png")
    return tmp_path


def run_example(command: list[str], code: str, server: str, workdir: Path) -> str:
    assert README_ADDRESS in code
    code = code.replace(README_ADDRESS, server)
    result = subprocess.run(command, input=code, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert not result.stderr.strip(), result.stderr
    return result.stdout


def test_the_readme_examples_use_only_what_the_repository_ships():
    sdk = readme_block("Using it from the segmind SDK", "python")
    curl = readme_block("Using it with curl", "sh")
    assert "examples/portrait.png" in sdk and "examples/portrait.png" in curl
    assert EXAMPLE_IMAGE.is_file()
    assert "-w0" not in curl and "base64 -w" not in curl  # GNU-only; macOS's base64 has no -w


def test_the_sdk_example_has_every_sdk_call_inside_its_try():
    tree = ast.parse(readme_block("Using it from the segmind SDK", "python"))
    outside = [
        ast.unparse(node)
        for statement in tree.body
        if not isinstance(statement, ast.Try)
        for node in ast.walk(statement)
        if isinstance(node, ast.Call)
        and (ast.unparse(node.func) == "SegmindClient" or ast.unparse(node.func).endswith(SDK_CALLS))
    ]
    assert not outside, f"outside the try: {outside}"
    assert any(isinstance(statement, ast.Try) for statement in tree.body)


def test_the_sdk_example_with_no_server_says_so_and_exits_cleanly(workdir):
    """Offline, or before the server is up: one line saying so, no traceback."""
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
        out = run_example(
            [sys.executable, "-"], readme_block("Using it from the segmind SDK", "python"), closed, workdir
        )
    assert out.startswith("cannot reach the server:"), out


def test_the_sdk_example_runs_as_written(server, workdir):
    out = run_example([sys.executable, "-"], readme_block("Using it from the segmind SDK", "python"), server, workdir)
    lines = out.splitlines()
    assert len(lines) == 2, out  # the request id, then the result; no error line
    assert re.fullmatch(r"[0-9a-f-]{8,}", lines[0]), out
    assert lines[1].startswith(f"COMPLETED {server}/outputs/") and lines[1].endswith(".mp4"), out
    info = probe_mp4(workdir / "out.mp4")
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"


def test_the_curl_example_runs_as_written(server, workdir):
    out = run_example(["sh"], readme_block("Using it with curl", "sh"), server, workdir)
    assert re.search(r'"status": *"QUEUED"', out), out
    assert re.search(r'"status": *"COMPLETED"', out), out
    assert re.search(rf'"output": *"{re.escape(server)}/outputs/[^"]+\.mp4"', out), out
    assert re.search(r"^HTTP/1\.1 200", out, re.M) and re.search(r"^content-type: video/mp4", out, re.M | re.I), out
    info = probe_mp4(workdir / "out.mp4")
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"


def test_the_beyond_image_to_video_example_runs_after_the_sdk_example(server, workdir):
    """Its calls continue the SDK example (its client, payload and image): text-to-video, keyframes, a LoRA of
    the server's --loras folder and prompt enhancement, all accepted and the last one waited for."""
    beyond = readme_block("Beyond image-to-video", "python")
    assert "enhance_prompt=True" in beyond and README_LORA in beyond and "ltx-2-19b-t2v" in beyond
    code = readme_block("Using it from the segmind SDK", "python") + beyond
    out = run_example([sys.executable, "-"], code, server, workdir)
    lines = out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("COMPLETED "), out
