"""examples/portrait.png, the picture the README's examples send, is what scripts/make_example_image.py draws."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "examples" / "portrait.png"


def _script():
    spec = importlib.util.spec_from_file_location("make_example_image", REPO / "scripts" / "make_example_image.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_image_is_a_small_png_of_the_stated_size():
    data = IMAGE.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 20_000
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (360, 640)


def test_the_script_draws_the_committed_picture_and_draws_it_the_same_every_time():
    script = _script()
    first, second = script.render(), script.render()
    assert first == second
    assert script.same_picture(IMAGE.read_bytes(), first), "run: python scripts/make_example_image.py"
    assert script.main(["--check", str(IMAGE)]) == 0


def test_the_check_reports_a_different_picture(tmp_path):
    script = _script()
    other = tmp_path / "other.png"
    Image.new("RGB", (360, 640), (1, 2, 3)).save(other)
    assert script.main(["--check", str(other)]) == 1
    assert script.main(["--check", str(tmp_path / "missing.png")]) == 1
