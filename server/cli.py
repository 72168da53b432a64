"""``ltx2-server``: the console script.

``serve`` runs the API process (uvicorn) which spawns the worker child itself.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from dataclasses import fields

from server.settings import GENERATE, SERVE, WORKER, Settings, command_fields, env_name, settings_from_env

log = logging.getLogger("ltx2.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltx2-server", description="Segmind-compatible LTX-2 image-to-video server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the HTTP API and its GPU worker", formatter_class=_Formatter, usage=_USAGE.format("serve")
    )
    add_settings_flags(serve, SERVE)
    worker = commands.add_parser(
        "worker",
        help="run GPU workers that take jobs from a shared store (--store redis://...), with no HTTP API",
        description="A worker host: its workers load the model and run jobs from the Redis queue that "
        "`ltx2-server serve --store redis://...` replicas fill. Run one per GPU host. Every LTX2_* variable "
        "applies; the HTTP API's options are `serve`'s.",
        formatter_class=_Formatter,
        usage=_USAGE.format("worker --store redis://HOST:PORT/DB"),
    )
    add_settings_flags(worker, WORKER)
    generate = commands.add_parser(
        "generate",
        help="generate one video without a server (same parameters and defaults as the API)",
        description="One video in a worker process, with a progress bar; non-zero exit on failure. Every "
        "LTX2_* variable applies (--x264-crf is LTX2_X264_CRF; serve's LTX2_JOB_TIMEOUT too).",
        formatter_class=_Formatter,
        usage=_USAGE.format("generate --image IMAGE --prompt TEXT --out MP4"),
    )
    from server.generate_cli import add_parameter_flags

    add_parameter_flags(generate.add_argument_group("the request (the API's parameters and defaults)"))
    add_settings_flags(generate, GENERATE, show_env=False)
    return parser


_USAGE = "ltx2-server {} [options]"


class _Formatter(argparse.HelpFormatter):
    """argparse's layout with the help text starting further right, so most options take one line less."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def add_settings_flags(parser: argparse.ArgumentParser, command: str = SERVE, show_env: bool = True) -> None:
    """The flags of the settings ``command`` offers, one argument group per settings group; each help
    ends with the option's environment variable (unless ``show_env`` is off) and its default."""
    defaults = Settings()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in command_fields(command):
        group = f.metadata["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        default = getattr(defaults, f.name)
        text = f.metadata.get("brief") or f.metadata.get("help", "")
        help_text = f"{text} [env {env_name(f.name)}; default {default!r}]" if show_env else f"{text} [{default!r}]"
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            groups[group].add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = _METAVARS.get(type(default), "TEXT")
            groups[group].add_argument(flag, type=type(default), default=None, metavar=metavar, help=help_text)


_METAVARS = {int: "N", float: "SEC", str: "TEXT"}


def configure_logging(level: str, log_format: str = "text") -> None:
    from server.logs import configure_logging as configure

    configure(level, log_format)


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

    from server.app import create_app
    from server.devices import NoGpus
    from server.http_timeouts import timed_protocol_class
    from server.logs import uvicorn_log_config
    from server.results import apply_results_umask
    from server.worker_child import weights_problems, worker_config_from

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
        access_log=False,  # server.logs writes one line per request, with the request id
    )
    _draining_server_class(uvicorn.Server)(config, app, settings.shutdown_grace).run()
    return 0


def run_worker(settings: Settings) -> int:
    from server.results import apply_results_umask
    from server.worker_child import weights_problems, worker_config_from
    from server.worker_host import run_worker_host

    configure_logging(settings.log_level, settings.log_format)
    apply_results_umask(settings.results_group_readable)
    if not settings.shared_store:
        raise SystemExit("ltx2-server worker: needs --store redis://HOST:PORT/DB (the queue it takes jobs from)")
    problems = weights_problems(worker_config_from(settings))
    if problems:
        raise SystemExit("ltx2-server: the model's weights are incomplete:\n  " + "\n  ".join(problems))
    from server.devices import NoGpus

    try:
        return run_worker_host(settings)
    except NoGpus as exc:
        raise SystemExit(f"ltx2-server: {exc}") from None


def _draining_server_class(base: type) -> type:
    class DrainingServer(base):
        """uvicorn, except that SIGTERM first drains: new jobs get 503 while the listener stays open
        (so clients read why, and keep polling the running job), the running job gets the grace
        period, then uvicorn's own shutdown runs. SIGINT, or a second SIGTERM, stops at once."""

        def __init__(self, config, app, grace: float) -> None:
            super().__init__(config)
            self._app = app
            self._grace = grace
            self._draining = False

        def handle_exit(self, sig, frame) -> None:
            if sig == signal.SIGTERM and self.started and not self._draining and not self.should_exit:
                self._draining = True
                # A signal handler runs on the main thread, between steps of the running loop.
                asyncio.get_event_loop().create_task(self._drain_then_exit())
                return
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            # Open event streams (the playground's, SSE clients') would otherwise hold uvicorn's
            # graceful wait for its full 30 s: end them first; clients reconnect or poll.
            service = getattr(self._app.state, "service", None)
            if service is not None:
                service.events.close()
            await super().shutdown(sockets)

        async def _drain_then_exit(self) -> None:
            try:
                await self._app.state.service.drain(self._grace)
            except Exception:  # noqa: BLE001 - shutting down must not depend on the drain going well
                log.exception("draining before shutdown failed")
            finally:
                self.should_exit = True

    return DrainingServer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setting_names = {f.name for f in fields(Settings)}
    overrides = {key: value for key, value in vars(args).items() if key in setting_names}
    settings = settings_from_env(**overrides)
    problems = settings.problems()
    if problems:
        raise SystemExit("ltx2-server: " + "; ".join(problems))
    if args.command == "serve":
        return serve(settings)
    if args.command == "worker":
        return run_worker(settings)
    if args.command == "generate":
        from server.generate_cli import run_generate

        # The progress view is the output here; the worker's start-up lines would only break the bar.
        configure_logging("warning" if settings.log_level == "info" else settings.log_level, settings.log_format)
        return run_generate(settings, args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
