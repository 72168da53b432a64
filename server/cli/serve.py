"""``ltx2-server serve``: the API process (uvicorn), which spawns its worker children itself; SIGTERM drains,
SIGINT (Ctrl-C) drains fast, a second signal stops at once."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

from server.cli.main import configure_logging
from server.jobs.store import SHUTTING_DOWN
from server.settings import Settings

log = logging.getLogger("ltx2.cli")

# The start of the error of every job a Ctrl-C ended (their /v1 callers get it with a 503).
INTERRUPTED = "the server was interrupted (SIGINT)"
# After a second signal, how long callers get to read how their jobs ended before the server stops.
STOP_NOW_LINGER_SECONDS = 0.5


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


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> int:
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
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to whatever handler
    # was there before; make that a clean exit so a requested stop reads as success (status 0).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
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
    _draining_server_class(uvicorn.Server)(config, app, settings.shutdown_grace).run()
    return 0


def _draining_server_class(base: type) -> type:
    class DrainingServer(base):
        """uvicorn, except that SIGTERM first drains: new jobs get 503 while the listener stays open
        (so clients read why, and keep polling the running job), the running job gets the grace
        period, then uvicorn's own shutdown runs. SIGINT drains the same way with no grace: queued and
        running jobs fail at once with INTERRUPTED, so waiting /v1 callers get a 503 and event streams
        their final status, then the process exits. A second signal stops at once."""

        def __init__(self, config, app, grace: float) -> None:
            super().__init__(config)
            self._app = app
            self._grace = grace
            self._draining = False
            self._drain_task: asyncio.Task | None = None

        def handle_exit(self, sig, frame) -> None:
            if sig in (signal.SIGTERM, signal.SIGINT) and self.started and not self._draining and not self.should_exit:
                self._draining = True
                if sig == signal.SIGINT:
                    log.warning("interrupted (SIGINT): failing the running and queued jobs; Ctrl-C again stops at once")
                    grace, reason = 0.0, INTERRUPTED
                else:
                    grace, reason = self._grace, SHUTTING_DOWN
                # A signal handler runs on the main thread, between steps of the running loop.
                self._drain_task = asyncio.get_event_loop().create_task(self._drain_then_exit(grace, reason))
                return
            if self._draining and not self.should_exit:
                # A second signal while draining: fail what is left now and stop (waiting /v1 callers
                # still get their 503); a third one is uvicorn's own immediate exit.
                log.warning("second signal: stopping now")
                if self._drain_task is not None:
                    self._drain_task.cancel()
                reason = INTERRUPTED if sig == signal.SIGINT else SHUTTING_DOWN
                self._drain_task = asyncio.get_event_loop().create_task(self._stop_now(reason))
                return
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            # Open event streams (the playground's, SSE clients') would otherwise hold uvicorn's
            # graceful wait for its full 30 s: end them first; clients reconnect or poll.
            service = getattr(self._app.state, "service", None)
            if service is not None:
                service.events.close()
            await super().shutdown(sockets)

        async def _stop_now(self, reason: str) -> None:
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
