"""A scale-out deployment on loopback for tests and benchmarks: one real redis-server, API replicas
(``ltx2-server serve --store redis://...``) and worker hosts (``ltx2-server worker``), all real
processes sharing one results folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.support.redis_server import RedisProcess
from tests.support.servers import REPO_ROOT, cli_server

TEST_MODEL = "tests.support.fixture_generators:tiny_or_scripted"


def worker_options(args: tuple[str, ...]) -> list[str]:
    """``args`` less the options (and their values) that ``ltx2-server worker`` does not offer."""
    from server.settings import WORKER, Settings, command_fields

    offered = {"--" + f.name.replace("_", "-") for f in command_fields(WORKER)}
    flags = {"--" + name.replace("_", "-"): value for name, value in vars(Settings()).items()}
    kept: list[str] = []
    items = iter(args)
    for arg in items:
        takes_value = arg in flags and not isinstance(flags[arg], bool)
        value = [next(items)] if takes_value else []
        if arg in offered or arg.removeprefix("--no-") in {flag.removeprefix("--") for flag in offered}:
            kept += [arg, *value]
    return kept


class Cluster:
    def __init__(self, root: Path, *, persistence: bool = True, model: str = TEST_MODEL, extra: tuple = ()) -> None:
        self.root = root
        self.results = root / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.ledger = root / "ledger.txt"
        self.ledger.touch()
        self.redis = RedisProcess(root / "redis", persistence)
        self.redis.data_dir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.extra = tuple(extra)
        self.apis: list[str] = []
        self.api_processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self._stack = ExitStack()

    @property
    def shared_args(self) -> tuple[str, ...]:
        return ("--store", self.redis.url, "--results-dir", str(self.results), *self.extra)

    def __enter__(self) -> Cluster:
        self.redis.start()
        self._stack.callback(self.redis.stop)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.workers:
            stop_process(process)
        self._stack.close()

    def start_worker(self, *args: str) -> subprocess.Popen:
        """A worker host, given the options of ``shared_args`` that ``worker`` offers (the API's are serve's)."""
        shared = worker_options(self.shared_args)
        command = [sys.executable, "-m", "server.cli", "worker", *shared, "--model", self.model, *args]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LTX2_TEST_LEDGER": str(self.ledger)}
        log_path = self.root / f"worker-{len(self.workers)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        self.workers.append(process)
        return process

    def start_api(self, *args: str) -> str:
        """An API replica; returns once it is ready (Redis answers and some worker takes jobs)."""
        base_url, process = self._stack.enter_context(cli_server(*self.shared_args, *args))
        self.apis.append(base_url)
        self.api_processes.append(process)
        return base_url

    def wait_for_workers(self, count: int, timeout: float = 240.0) -> list[dict]:
        """Until `count` workers report ready or busy through an API replica's /ready."""
        deadline = time.monotonic() + timeout
        workers: list[dict] = []
        while time.monotonic() < deadline:
            try:
                workers = httpx.get(f"{self.apis[0]}/ready", timeout=5).json().get("workers", [])
            except httpx.HTTPError:
                workers = []
            if sum(1 for worker in workers if worker["state"] in ("ready", "busy")) >= count:
                return workers
            time.sleep(0.2)
        raise TimeoutError(f"{count} workers not ready within {timeout} s; saw {workers}")


def host_pid(worker_name: str) -> int:
    """The worker host's pid, from a worker's name in the store (HOSTNAME-PID/INDEX)."""
    return int(worker_name.split("/")[0].rsplit("-", 1)[1])


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
