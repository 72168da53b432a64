#!/usr/bin/env bash
# Wheels that scripts/bench_gpu.py needs on the `device` tool's GPU machines (Python 3.12, x86-64, no network).
#
# Those machines have torch, transformers, accelerate, huggingface_hub, safetensors, numpy and pillow, but
# not diffusers, av (PyAV) or imageio-ffmpeg (see /work/.library/device/KINDS.md). This script downloads, into
# .whl/ (git-ignored), the versions this checkout's .venv has (`.venv/bin/pip freeze`), --no-deps:
#   diffusers, importlib_metadata (diffusers needs it; the image lacks it), av, peft (pinned to ours too),
#   and imageio-ffmpeg's Python code.
# The ffmpeg binary inside imageio-ffmpeg 0.8.x is 68 MB zipped, over the 64 MiB a device call may carry on
# its own; so its wheel is repacked without it, and .whl/ffmpeg.xz carries the static ffmpeg 7.0.2 of
# imageio-ffmpeg 0.6.0 instead (xz: ~21 MB), pointed at by IMAGEIO_FFMPEG_EXE there. In all ~62 MiB.
#
# Usage, here, from any directory (needs `make setup` first; ~1-2 minutes, mostly xz):
#   bash scripts/gpu_wheels.sh
# Then, one `device` run (carry [".whl"], timeout_s 600), from the repo root:
#   set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.whl/ffmpeg.xz'),open('/tmp/ffmpeg','wb'))" && chmod +x /tmp/ffmpeg && export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg PYTHONUNBUFFERED=1 && python3 scripts/bench_gpu.py --json $OUT/bench_gpu.json 2>&1 | tee $OUT/bench_gpu.log
set -euo pipefail
cd "$(dirname "$0")/.."

PIP=.venv/bin/pip
PYTHON=.venv/bin/python
DEST=.whl
FFMPEG_SOURCE=imageio-ffmpeg==0.6.0  # the newest release whose ffmpeg fits the carry limit once xz'd

[ -x "$PIP" ] || { echo "no .venv: run 'make setup' first" >&2; exit 1; }

pinned() {  # NAME -> NAME==VERSION as .venv has it ('-' and '_' are the same in package names)
    "$PIP" freeze 2>/dev/null | grep -iE "^$(echo "$1" | sed 's/[-_]/[-_]/g')==" | head -n 1
}
FREEZE_NAMES=(diffusers importlib_metadata av peft imageio-ffmpeg)
declare -A PIN
for name in "${FREEZE_NAMES[@]}"; do
    PIN[$name]=$(pinned "$name")
    [ -n "${PIN[$name]}" ] || { echo "$name is not installed in .venv" >&2; exit 1; }
done

download() {  # pip download for CPython 3.12 on manylinux x86-64
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 \
        --dest "$1" "${@:2}" 2>&1 | grep -v "^WARNING: Location" || true
}

rm -rf "$DEST"
mkdir -p "$DEST"
download "$DEST" "${PIN[diffusers]}" "${PIN[importlib_metadata]}" "${PIN[av]}" "${PIN[peft]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download "$work/ours" "${PIN[imageio-ffmpeg]}"
download "$work/ffmpeg" "$FFMPEG_SOURCE"

# imageio-ffmpeg without its bundled binary (and without that file's RECORD line), same file name.
"$PYTHON" - "$work/ours"/imageio_ffmpeg-*.whl "$DEST" <<'EOF'
import sys, zipfile
from pathlib import Path

source, dest = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(dest / source.name, "w", zipfile.ZIP_DEFLATED) as slim:
    for item in wheel.infolist():
        if "/binaries/ffmpeg-" in item.filename:
            continue
        data = wheel.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True) if b"/binaries/ffmpeg-" not in line)
        slim.writestr(item, data)
EOF

unzip -q -o "$work/ffmpeg"/imageio_ffmpeg-*.whl 'imageio_ffmpeg/binaries/ffmpeg-*' -d "$work/ffmpeg"
xz -T0 -6 -c "$work/ffmpeg"/imageio_ffmpeg/binaries/ffmpeg-* > "$DEST/ffmpeg.xz"

ls -l "$DEST"
du -ch "$DEST"/* | tail -n 1
