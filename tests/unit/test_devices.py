"""--gpus parsed into workers: the forms, the errors, and the thread split for CPU workers."""

from __future__ import annotations

import pytest

from server.settings import Settings
from server.workers.devices import NoGpus, WorkerDevice, gpus_problem, worker_devices


def test_empty_means_one_worker_on_the_device_setting_exactly_as_before():
    assert worker_devices("", "cuda:1") == [WorkerDevice(label="cuda:1", device="cuda:1")]
    assert worker_devices("", "auto", threads=3) == [WorkerDevice(label="auto", device="auto", threads=3)]


def test_index_list_pins_one_worker_per_gpu_which_each_sees_as_cuda():
    devices = worker_devices("0,2,3", "cpu")
    assert [d.label for d in devices] == ["cuda:0", "cuda:2", "cuda:3"]
    assert [d.cuda_visible_devices for d in devices] == ["0", "2", "3"]
    assert {d.device for d in devices} == {"cuda"}


def test_all_counts_the_gpus_and_fails_clearly_without_any():
    assert [d.label for d in worker_devices("all", "auto", count_gpus=lambda: 2)] == ["cuda:0", "cuda:1"]
    with pytest.raises(NoGpus, match="gpus: 'all' found no NVIDIA GPU"):
        worker_devices("all", "auto", count_gpus=lambda: 0)


def test_cpu_workers_split_the_cores_unless_threads_are_given():
    assert worker_devices("cpu:2", "auto", cpu_count=8) == [WorkerDevice("cpu", "cpu", "", 4)] * 2
    assert [d.threads for d in worker_devices("cpu:3", "auto", cpu_count=2)] == [1, 1, 1]
    assert [d.threads for d in worker_devices("cpu:2", "auto", cpu_count=2, threads=2)] == [2, 2]


@pytest.mark.parametrize("spec", ["", "all", "0", "0,2,3", "cpu:1", "cpu:4", " all "])
def test_allowed_forms_have_no_problem(spec):
    assert gpus_problem(spec) is None
    assert not [p for p in Settings(gpus=spec).problems() if p.startswith("gpus")]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("cuda:0", "must be"),
        ("0,,1", "must be"),
        ("-1", "must be"),
        ("first", "must be"),
        ("0,1,0", "each GPU index may appear once"),
        ("cpu:0", "cpu:N needs N from 1"),
        ("cpu:", "must be"),
    ],
)
def test_other_values_are_refused_naming_the_field_and_the_forms(spec, says):
    problems = [p for p in Settings(gpus=spec).problems() if p.startswith("gpus: ")]
    assert len(problems) == 1 and says in problems[0] and repr(spec) in problems[0]
    if says == "must be":
        assert "all" in problems[0] and "0,2,3" in problems[0] and "cpu:N" in problems[0]
