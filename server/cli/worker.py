"""``ltx2-server worker``: a worker host (server/workers/host.py) taking jobs from ``--store redis://``."""

from __future__ import annotations

import logging

from server.cli.main import configure_logging
from server.settings import Settings


def run_worker(settings: Settings) -> int:
    from server.storage.results import apply_results_umask
    from server.workers.child import weights_problems, worker_config_from
    from server.workers.host import run_worker_host

    configure_logging(settings.log_level, settings.log_format)
    apply_results_umask(settings.results_group_readable)
    if not settings.shared_store:
        raise SystemExit("ltx2-server worker: needs --store redis://HOST:PORT/DB (the queue it takes jobs from)")
    problems = weights_problems(worker_config_from(settings))
    if problems:
        raise SystemExit("ltx2-server: the model's weights are incomplete:\n  " + "\n  ".join(problems))
    if settings.serves_test_model():
        logging.getLogger("ltx2.worker").warning(settings.test_model_warning())
    from server.workers.devices import NoGpus

    try:
        return run_worker_host(settings)
    except NoGpus as exc:
        raise SystemExit(f"ltx2-server: {exc}") from None
