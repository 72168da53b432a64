"""A job's one input file: the image itself, or the bundle of a text-to-video or keyframe request's images."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.inputs import JobInputs, pack_inputs, unpack_inputs
from pipelines.interface import TASK_T2V, InvalidInputError, JobSpec, Keyframe

SPEC = JobSpec("p", "n", 256, 256, 9, 8, 1, 4.0)


def test_a_plain_image_job_reads_its_input_as_the_image(tmp_path):
    stored = tmp_path / "input"
    stored.write_bytes(b"PNG bytes")
    assert not SPEC.has_input_bundle
    assert unpack_inputs(SPEC, stored, tmp_path / "out").image == stored


def test_the_bundle_gives_back_the_image_and_each_keyframe_in_order(tmp_path):
    spec = dataclasses.replace(SPEC, keyframes=(Keyframe(4), Keyframe(8, 0.5)))
    stored = tmp_path / "input"
    stored.write_bytes(pack_inputs(b"image", [b"first", b"second"]))
    inputs = unpack_inputs(spec, stored, tmp_path / "out")
    assert inputs.image is not None and inputs.image.read_bytes() == b"image"
    assert [path.read_bytes() for path in inputs.keyframes] == [b"first", b"second"]


def test_text_to_video_has_no_image(tmp_path):
    spec = dataclasses.replace(SPEC, task=TASK_T2V)
    stored = tmp_path / "input"
    stored.write_bytes(pack_inputs(None, []))
    assert unpack_inputs(spec, stored, tmp_path / "out") == JobInputs(image=None, keyframes=())


def test_a_bundle_missing_a_keyframe_or_not_a_bundle_is_the_inputs_fault(tmp_path):
    spec = dataclasses.replace(SPEC, keyframes=(Keyframe(4), Keyframe(8)))
    stored = tmp_path / "input"
    stored.write_bytes(pack_inputs(b"image", [b"only one"]))
    with pytest.raises(InvalidInputError, match="lacks keyframe-1"):
        unpack_inputs(spec, stored, tmp_path / "out")
    stored.write_bytes(b"\x89PNG not a tar at all" * 40)
    with pytest.raises(InvalidInputError, match="input bundle cannot be read"):
        unpack_inputs(spec, stored, tmp_path / "out2")
