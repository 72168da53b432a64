"""``ltx2-server serve``: the API process (uvicorn), which spawns its worker children itself. SIGTERM drains
and exits 0; SIGINT (Ctrl-C) drains fast and exits 130; a second signal stops now, a third exits at once."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import NoReturn

from server.cli.main import configure_logging
from server.jobs.store import SHUTTING_DOWN
from server.settings import Settings

log = logging.getLogger("ltx2.cli")

# The start of the error of every job a Ctrl-C ended (their /v1 callers get it with a 503).
INTERRUPTED = "the server was interrupted (SIGINT)"
# After a second signal, how long callers get to read how their jobs ended before the server stops.
STOP_NOW_LINGER_SECONDS = 0.5
# 128 + SIGINT, as shells report a Ctrl-C (generate exits with it too).
EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def warn_if_open_without_auth(settings: Settings) -> None:
    if settings.parsed_api_keys():
        return
    try:
        public = not ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        public = settings.host not in ("localhost",)
    if public:
        log.warning(
            "authentication is OFF and the server listens on %s: anyone who reaches it can submit jobs", settings.host
        )


class StopSignals:
    """The stop signals the process received: how many (each one stops harder) and whether one was a
    Ctrl-C, which the exit status reports however the stop went."""

    def __init__(self) -> None:
        self.count = 0
        self.interrupted = False
        self.server_done = False  # uvicorn has returned: only the interpreter's own exit is left
        self.temporary_results: Path | None = None

    def record(self, signum: int) -> int:
        self.count += 1
        self.interrupted = self.interrupted or signum == signal.SIGINT
        return self.count

    @property
    def exit_status(self) -> int:
        return EXIT_INTERRUPTED if self.interrupted else 0

    def outside_the_server(self, signum: int, frame: object) -> None:
        """The handler before uvicorn takes the signals (nothing runs yet: stop there) and after it
        gives them back (clean-up is all that is left: a further signal means do not wait for it)."""
        self.record(signum)
        if self.server_done:
            self.exit_at_once()
        raise SystemExit(self.exit_status)

    def exit_at_once(self) -> NoReturn:
        """Leave now, from a signal handler: no task is cancelled, so nothing prints a traceback; the
        worker children die with this process (their parent-death signal)."""
        log.warning("signal %d received: exiting at once (status %d)", self.count, self.exit_status)
        if self.temporary_results is not None:
            shutil.rmtree(self.temporary_results, ignore_errors=True)
        os._exit(self.exit_status)


def serve(settings: Settings) -> int:
    # First, so that a Ctrl-C while the imports and checks below run exits quietly too.
    signals = StopSignals()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signals.outside_the_server)
    import uvicorn

    from server.api.app import create_app
    from server.api.http_timeouts import timed_protocol_class
    from server.observability.logs import uvicorn_log_config
    from server.storage.results import apply_results_umask
    from server.workers.child import weights_problems, worker_config_from
    from server.workers.devices import NoGpus

    if settings.shared_store and settings.gpus:
        # An API replica runs no workers: they run on worker hosts, which is where --gpus belongs.
        raise SystemExit(
            "ltx2-server: gpus: an API replica of a shared store (--store redis://...) runs no workers; "
            f"start them with `ltx2-server worker --store ... --gpus {settings.gpus}`"
        )
    configure_logging(settings.log_level, settings.log_format)
    apply_results_umask(settings.results_group_readable)  # (the worker child inherits it)
    worker_config = worker_config_from(settings)
    if settings.model == "auto" and not settings.shared_store:
        where = (
            f"weights found in {settings.weights}"
            if worker_config.model != "tiny"
            else f"no weights in {settings.weights}"
        )
        log.info("--model auto: serving %s (%s)", worker_config.model, where)
    # An API replica of a shared store loads no model: its worker hosts check their own weights.
    problems = [] if settings.shared_store else weights_problems(worker_config)
    if problems:
        # Fail at once with what is missing, rather than serve 503s while the worker cannot load.
        raise SystemExit("ltx2-server: the model's weights are incomplete:\n  " + "\n  ".join(problems))
    warn_if_open_without_auth(settings)
    try:
        app = create_app(settings)
    except NoGpus as exc:
        raise SystemExit(f"ltx2-server: {exc}") from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
        log_config=uvicorn_log_config(settings.log_format),
        # Slow clients (slowloris): a request's headers and body each have a deadline; 408 past it.
        http=timed_protocol_class(settings.header_timeout, settings.body_timeout),
        access_log=False,  # server.observability.logs writes one line per request, with the request id
    )
    _draining_server_class(uvicorn.Server)(config, app, settings.shutdown_grace, signals).run()
    signals.server_done = True
    return signals.exit_status


def _draining_server_class(base: type) -> type:
    class DrainingServer(base):
        """uvicorn, except that SIGTERM first drains: new jobs get 503 while the listener stays open
        (so clients read why, and keep polling the running job), the running job gets the grace
        period, then uvicorn's own shutdown runs. SIGINT drains the same way with no grace: queued and
        running jobs fail at once with INTERRUPTED, so waiting /v1 callers get a 503 and event streams
        their final status, then the process exits. A second signal stops now (the jobs still fail
        with a reason); a third, or a second once the shutdown is under way, exits at once.

        uvicorn's own handling is bypassed for these two signals: its force-exit cancels tasks
        mid-flight (CancelledError tracebacks), and it re-raises the signal after a graceful stop."""

        def __init__(self, config, app, grace: float, signals: StopSignals) -> None:
            super().__init__(config)
            self._app = app
            self._grace = grace
            self._signals = signals
            self._drain_task: asyncio.Task | None = None

        def handle_exit(self, sig, frame) -> None:
            if sig not in STOP_SIGNALS:
                super().handle_exit(sig, frame)
                return
            count = self._signals.record(sig)
            self._signals.temporary_results = getattr(self._app.state, "temporary_results", None)
            if count == 1 and self.started and not self.should_exit:
                self._start_drain(sig)
            elif count == 1:
                self._exit_when_started()  # still starting, or already stopping: uvicorn's stop will do
            elif count == 2 and self._drain_task is not None and not self._drain_task.done():
                self._stop_now(sig)
            else:
                self._signals.exit_at_once()

        def _exit_when_started(self) -> None:
            self.should_exit = True

        def _start_drain(self, sig) -> None:
            if sig == signal.SIGINT:
                log.warning("interrupted (SIGINT): failing the running and queued jobs; Ctrl-C again stops at once")
                grace, reason = 0.0, INTERRUPTED
            else:
                grace, reason = self._grace, SHUTTING_DOWN
            # A signal handler runs on the main thread, between steps of the running loop.
            self._drain_task = asyncio.get_event_loop().create_task(self._drain_then_exit(grace, reason))

        def _stop_now(self, sig) -> None:
            # Fail what is left now and stop (waiting /v1 callers still get their 503).
            log.warning("second signal: stopping now; a third exits at once")
            if self._drain_task is not None:
                self._drain_task.cancel()
            reason = INTERRUPTED if sig == signal.SIGINT else SHUTTING_DOWN
            self._drain_task = asyncio.get_event_loop().create_task(self._fail_jobs_then_exit(reason))

        async def shutdown(self, sockets=None) -> None:
            # Open event streams (the playground's, SSE clients') would otherwise hold uvicorn's
            # graceful wait for its full 30 s: end them first; clients reconnect or poll.
            service = getattr(self._app.state, "service", None)
            if service is not None:
                service.events.close()
            await super().shutdown(sockets)

        async def _fail_jobs_then_exit(self, reason: str) -> None:
            try:
                # Jobs fail at once; the drain's wait for pollers is cut short.
                await asyncio.wait_for(self._app.state.service.drain(0.0, reason), STOP_NOW_LINGER_SECONDS)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            except Exception:  # noqa: BLE001 - stopping must not depend on the drain going well
                log.exception("failing the jobs before stopping failed")
            finally:
                self.should_exit = True

        async def _drain_then_exit(self, grace: float, reason: str) -> None:
            try:
                await self._app.state.service.drain(grace, reason)
            except asyncio.CancelledError:
                return  # a second signal: _stop_now takes over
            except Exception:  # noqa: BLE001 - shutting down must not depend on the drain going well
                log.exception("draining before shutdown failed")
            self.should_exit = True

    return DrainingServer
