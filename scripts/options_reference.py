"""Write the options reference of docs/configuration.md from server/settings.py's own metadata.

Usage: python scripts/options_reference.py          # rewrite the block in docs/configuration.md
       python scripts/options_reference.py --check  # exit 1 (and say so) when the block is out of date
       python scripts/options_reference.py --print  # print the generated block only

The block sits between the two marker comments ``<!-- options-reference:start -->`` and
``<!-- options-reference:end -->``; nothing outside it is touched. Each option comes from a field of
the ``Settings`` dataclass: the flag is the field's name with ``-`` for ``_``, the environment variable
``LTX2_`` + the name in capitals, the default is the dataclass default and the meaning is the field's
``metadata["help"]``. Settings grouped into nested dataclasses (a field whose default is itself a
dataclass) are walked through, one table per group; so are fields carrying a ``metadata["group"]``
key. With neither, the options form one table, in the order settings.py declares them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "configuration.md"
START = "<!-- options-reference:start -->"
END = "<!-- options-reference:end -->"
ENV_PREFIX = "LTX2_"


@dataclasses.dataclass(frozen=True)
class Option:
    name: str  # the field's name (snake_case)
    default: Any
    help: str
    group: str  # "" when settings.py does not group its fields
    commands: tuple[str, ...] = ()  # the commands offering this flag, where settings.py says


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _group_title(f: dataclasses.Field, value: Any) -> str:
    title = f.metadata.get("group") or f.metadata.get("title")
    if title:
        return str(title)
    doc = (type(value).__doc__ or "").strip()
    # A dataclass without a docstring gets one generated from its signature: not a title.
    if doc and not doc.startswith(type(value).__name__ + "("):
        return doc.splitlines()[0].rstrip(".")
    return f.name.replace("_", " ")


def collect(settings_cls: type | None = None) -> list[Option]:
    """Every option of the Settings dataclass, in declaration order, with its group (if any)."""
    if settings_cls is None:
        sys.path.insert(0, str(REPO))
        from server.settings import Settings as settings_cls  # type: ignore[no-redef]

    def walk(cls: type, group: str) -> Iterator[Option]:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = _default_of(f)
            if dataclasses.is_dataclass(default) and not isinstance(default, type):
                yield from walk(type(default), _group_title(f, default))
                continue
            option_group = str(f.metadata.get("group", group) or "")
            commands = f.metadata.get("commands") or group_commands.get(option_group) or ()
            yield Option(
                name=f.name,
                default=default,
                help=str(f.metadata.get("help", "")).strip(),
                group=option_group,
                commands=tuple(commands),
            )

    # Which commands offer each group's flags, where settings.py says (a {group: commands} mapping).
    module = sys.modules.get(settings_cls.__module__)
    group_commands = dict(getattr(module, "GROUP_COMMANDS", None) or {})
    return list(walk(settings_cls, ""))


def flag(option: Option) -> str:
    name = "--" + option.name.replace("_", "-")
    if isinstance(option.default, bool):
        return f"`{name}` / `--no-{name[2:]}`"
    return f"`{name}`"


def env(option: Option) -> str:
    return f"`{ENV_PREFIX}{option.name.upper()}`"


def show_default(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "" or value is None:
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def listing(commands: tuple[str, ...]) -> str:
    names = [f"`{command}`" for command in commands]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def table(options: list[Option], group_commands: tuple[str, ...] = ()) -> list[str]:
    lines = ["| option | environment variable | default | meaning |", "|---|---|---|---|"]
    for option in options:
        meaning = escape(option.help)
        if option.commands and option.commands != group_commands:
            meaning += f" (a flag of {listing(option.commands)} only)"
        lines.append(f"| {flag(option)} | {env(option)} | {show_default(option.default)} | {meaning} |")
    return lines


def group_commands_of(members: list[Option]) -> tuple[str, ...]:
    """The commands most of a group's options are offered by (the group's own)."""
    counts: dict[tuple[str, ...], int] = {}
    for option in members:
        counts[option.commands] = counts.get(option.commands, 0) + 1
    return max(counts, key=lambda commands: counts[commands]) if counts else ()


def render(options: list[Option] | None = None) -> str:
    """The generated block, markers excluded, ending with a newline."""
    options = collect() if options is None else options
    lines = [
        "<!-- Generated by scripts/options_reference.py from server/settings.py: edit the help text there, "
        "then run the script. -->",
        "",
    ]
    groups: dict[str, list[Option]] = {}
    for option in options:
        groups.setdefault(option.group, []).append(option)
    if list(groups) == [""]:
        lines += table(options)
    else:
        for index, (group, members) in enumerate(groups.items()):
            if index:
                lines.append("")
            lines += [f"#### {group[:1].upper() + group[1:] if group else 'Other options'}", ""]
            commands = group_commands_of(members)
            if commands:
                lines += [f"Flags of {listing(commands)}.", ""]
            lines += table(members, commands)
    return "\n".join(lines) + "\n"


def split(text: str) -> tuple[str, str, str]:
    """(before the block, the block, after it); the markers stay in before and after."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{DOC.relative_to(REPO)}: needs exactly one {START} followed by one {END}")
    head, rest = text.split(START, 1)
    block, tail = rest.split(END, 1)
    return head + START + "\n", block.lstrip("\n"), END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is out of date")
    mode.add_argument("--print", action="store_true", help="print the generated block and touch nothing")
    args = parser.parse_args(argv)
    generated = render()
    if args.print:
        sys.stdout.write(generated)
        return 0
    text = DOC.read_text(encoding="utf-8")
    head, block, tail = split(text)
    if args.check:
        if block == generated:
            return 0
        print(
            f"{DOC.relative_to(REPO)}: the options reference is out of date; run: python scripts/options_reference.py",
            file=sys.stderr,
        )
        return 1
    new = head + generated + tail
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"{DOC.relative_to(REPO)}: options reference rewritten ({len(collect())} options)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
