"""``ltx2-server``: the console script's parser and ``main``, which hands the settings to the subcommand's
module: ``serve`` (server/cli/serve.py), ``worker`` (server/cli/worker.py), ``generate`` (server/cli/generate.py).
"""

from __future__ import annotations

import argparse
import functools
import logging
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
        usage=_USAGE.format("generate [--image IMAGE] --prompt TEXT --out MP4"),
    )
    from server.cli.generate import add_parameter_flags

    add_parameter_flags(generate.add_argument_group("the request (the API's parameters and defaults)"))
    add_settings_flags(generate, GENERATE, show_env=False)
    return parser


_USAGE = "ltx2-server {} [options]"
# argparse's layout with the help text starting further right, so most options take one line less.
_Formatter = functools.partial(argparse.HelpFormatter, max_help_position=30)


def add_settings_flags(parser: argparse.ArgumentParser, command: str = SERVE, show_env: bool = True) -> None:
    """One argument group per settings group; each help ends with the environment variable and the default."""
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
            bare = {"nargs": "?", "const": f.metadata["bare"]} if f.metadata.get("bare") else {}
            groups[group].add_argument(flag, type=type(default), default=None, metavar=metavar, help=help_text, **bare)


_METAVARS = {int: "N", float: "SEC", str: "TEXT"}


def configure_logging(level: str, log_format: str = "text") -> None:
    from server.observability.logs import configure_logging as configure

    configure(level, log_format)


def main(argv: list[str] | None = None) -> int:
    try:
        return run_command(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a command installs its own handling (while parsing, checking, importing): one line.
        print("ltx2-server: interrupted", file=sys.stderr)
        return 130


def run_command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setting_names = {f.name for f in fields(Settings)}
    overrides = {key: value for key, value in vars(args).items() if key in setting_names}
    settings = settings_from_env(**overrides)
    problems = settings.problems()
    if problems:
        raise SystemExit("ltx2-server: " + "; ".join(problems))
    if args.command == "serve":
        from server.cli.port import port_in_use

        if port_in_use(settings.host, settings.port):
            raise SystemExit(f"ltx2-server: port {settings.port} is in use: another ltx2-server? use --port")
        from server.cli.serve import serve

        return serve(settings)
    if args.command == "worker":
        from server.cli.worker import run_worker

        return run_worker(settings)
    if args.command == "generate":
        from server.cli.generate import run_generate

        # The progress view is the output here; the worker's start-up lines would only break the bar.
        configure_logging("warning" if settings.log_level == "info" else settings.log_level, settings.log_format)
        return run_generate(settings, args)
    return 2
