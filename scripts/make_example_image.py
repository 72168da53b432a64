"""Write examples/portrait.png, the picture the README's examples send: 360x640, made in code.

Deterministic (no randomness, no timestamps, no download): running it again draws the same pixels (and,
with the same Pillow and zlib, writes the same bytes):

    .venv/bin/python scripts/make_example_image.py            # writes examples/portrait.png
    .venv/bin/python scripts/make_example_image.py --check    # exit 0 if the committed file shows the same picture
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 360, 640
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "examples" / "portrait.png"


def render() -> bytes:
    """A portrait-shaped scene: a sky-to-ground gradient, a sun and a simple figure, as PNG bytes."""
    img = Image.new("RGB", (WIDTH, HEIGHT))
    horizon = HEIGHT * 2 // 3
    for y in range(HEIGHT):
        if y < horizon:
            t = y / horizon
            color = (int(90 + 120 * t), int(150 + 70 * t), 235)
        else:
            t = (y - horizon) / (HEIGHT - horizon)
            color = (int(70 - 30 * t), int(140 - 50 * t), int(60 - 20 * t))
        img.paste(color, (0, y, WIDTH, y + 1))
    draw = ImageDraw.Draw(img)
    draw.ellipse((250, 60, 320, 130), fill=(255, 220, 120))  # sun
    cx = WIDTH // 2
    draw.ellipse((cx - 32, 250, cx + 32, 314), fill=(224, 180, 150))  # head
    draw.rounded_rectangle((cx - 60, 320, cx + 60, 500), radius=24, fill=(60, 90, 150))  # denim jacket
    draw.rectangle((cx - 45, 500, cx - 8, 600), fill=(40, 40, 50))  # legs
    draw.rectangle((cx + 8, 500, cx + 45, 600), fill=(40, 40, 50))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def same_picture(a: bytes, b: bytes) -> bool:
    """Whether two PNGs decode to the same size, mode and pixels (zlib builds may compress differently)."""
    if a == b:
        return True
    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        return (first.size, first.mode) == (second.size, second.mode) and first.tobytes() == second.tobytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help="where to write (default: examples/portrait.png)"
    )
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    data = render()
    if args.check:
        same = args.path.is_file() and same_picture(args.path.read_bytes(), data)
        print(f"{args.path}: {'up to date' if same else 'differs; run without --check to rewrite it'}")
        return 0 if same else 1
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_bytes(data)
    print(f"wrote {args.path} ({WIDTH}x{HEIGHT}, {len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
