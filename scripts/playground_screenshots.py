"""Take the playground screenshots the docs show: docs/images/playground-1280x800.png (a wide screen) and
docs/images/playground-390x844.png (a phone), each as the page looks once a job has finished: its video
in view.

It starts a real server with the tiny test model (`ltx2-server serve --model tiny`, offline, on the CPU),
sends examples/portrait.png with a prompt through the page in headless Chromium (Playwright driving the
system's Chromium: nothing is downloaded), waits for the video, and saves both views as palette PNGs
small enough to keep in the repository:

    .venv/bin/python scripts/playground_screenshots.py                 # writes docs/images/playground-*.png
    .venv/bin/python scripts/playground_screenshots.py --out /tmp/shots

The tiny model's frames are noise and the page says so in its banner: that is what these pictures show.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "docs" / "images"
PICTURE = REPO_ROOT / "examples" / "portrait.png"
PROMPT = "She waves at the camera and smiles, her jacket moving in a light breeze at sunset"
# Small enough for the tiny model to finish on a CPU in seconds; portrait, like the picture.
JOB_FIELDS = {"width": "288", "height": "512", "num_frames": "9", "fps": "8"}
VIEWS = {"playground-1280x800.png": (1280, 800), "playground-390x844.png": (390, 844)}
MAX_BYTES = 300_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
CHROMIUM_ARGS += ["--autoplay-policy=no-user-gesture-required"]  # the script plays the video without a click


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def tiny_server(log_path: Path, results_dir: Path):
    """`ltx2-server serve --model tiny` on a free loopback port until /ready answers 200; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--model", "tiny", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--results-dir", str(results_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            process.wait(60)


def wait_until_ready(base_url: str, process: subprocess.Popen, log_path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server was not ready within {timeout:g} s:\n{log_path.read_text()}")


def generate_in_the_page(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.wait_for_selector("#param-prompt")
    page.set_input_files("#image-file", str(PICTURE))
    page.fill("#param-prompt", PROMPT)
    for name, value in JOB_FIELDS.items():
        page.fill(f"#param-{name}", value)
    page.click("#submit")
    wait_for_the_video(page)


def wait_for_the_video(page) -> None:
    """Until the finished video has loaded, then shows a frame with the player's controls at rest."""
    page.wait_for_function(
        "document.getElementById('stage').textContent === 'Done'"
        " && document.getElementById('video').readyState >= 4"
        " && document.getElementById('video').networkState !== HTMLMediaElement.NETWORK_LOADING",
        timeout=300_000,
    )
    # A video that has never played keeps Chromium's loading arc over it in headless mode: play it for
    # a moment, as a visitor would, then pause.
    page.evaluate(
        """async () => {
          const video = document.getElementById('video');
          await video.play();
          await new Promise((resolve) => setTimeout(resolve, 500));
          video.pause();
        }"""
    )
    page.wait_for_timeout(300)
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture


def small_png(screenshot: bytes) -> bytes:
    """The screenshot as a 256-colour PNG: text and flat colours stay sharp, the file a fraction of the size."""
    with Image.open(io.BytesIO(screenshot)) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def take_screenshots(base_url: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="ltx2-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            for name, (width, height) in VIEWS.items():
                page = context.new_page()
                page.set_viewport_size({"width": width, "height": height})
                generate_in_the_page(page, base_url)
                data = small_png(page.screenshot())
                if len(data) > MAX_BYTES:
                    raise SystemExit(f"{name}: {len(data)} bytes, over the {MAX_BYTES} kept in the repository")
                path = out / name
                path.write_bytes(data)
                written.append(path)
                page.close()
        finally:
            context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Take the playground screenshots the docs show.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs (default: docs/images)")
    parser.add_argument(
        "--chromium",
        default=os.environ.get("LTX2_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium",
        help="the Chromium binary Playwright drives (default: chromium on PATH; Debian: apt-get install chromium)",
    )
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        parser.error(f"no Chromium at {args.chromium}: apt-get install chromium, or pass --chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ltx2-screenshots-") as scratch:
        scratch_dir = Path(scratch)
        with tiny_server(scratch_dir / "server.log", scratch_dir / "results") as base_url:
            for path in take_screenshots(base_url, args.out, args.chromium):
                print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
