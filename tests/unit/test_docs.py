"""The docs cannot drift: the options reference is the generator's output, and every link resolves."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _generator():
    spec = importlib.util.spec_from_file_location("options_reference", REPO / "scripts" / "options_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclass looks its module up there)
    spec.loader.exec_module(module)
    return module


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_the_options_reference_is_what_the_generator_writes_from_the_settings():
    generator = _generator()
    head, block, tail = generator.split((DOCS / "configuration.md").read_text(encoding="utf-8"))
    assert block == generator.render(), "run: python scripts/options_reference.py"


def test_the_options_reference_names_every_setting_with_its_flag_env_variable_and_help():
    generator = _generator()
    options = generator.collect()
    block = generator.render(options)
    assert len(options) >= 40
    for option in options:
        assert option.help, f"{option.name}: give it metadata['help'] in server/settings.py"
        assert f"`--{option.name.replace('_', '-')}`" in block
        assert f"`LTX2_{option.name.upper()}`" in block


def test_the_check_mode_fails_on_a_stale_block(tmp_path, monkeypatch, capsys):
    generator = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text(f"# x\n{generator.START}\n| old |\n{generator.END}\nafter\n", encoding="utf-8")
    monkeypatch.setattr(generator, "DOC", stale)
    monkeypatch.setattr(generator, "REPO", tmp_path)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    text = stale.read_text(encoding="utf-8")
    assert text.startswith("# x\n") and text.endswith(f"{generator.END}\nafter\n") and "| old |" not in text


def test_every_doc_is_linked_from_the_readme_and_every_linked_doc_exists():
    linked = {
        (README.parent / link.split("#")[0]).resolve()
        for link in _links(README)
        if link.split("#")[0].startswith("docs/")
    }
    for path in linked:
        assert path.is_file(), f"README.md links {path.relative_to(REPO)}, which does not exist"
    for doc in DOCS.glob("*.md"):
        if doc.name == "architecture.md" and doc not in linked:
            continue  # written separately; linked from the README once it exists
        assert doc.resolve() in linked, f"README.md does not link docs/{doc.name}"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for path in _doc_files():
        for link in _links(path):
            if re.match(r"[a-z][a-z0-9+.-]*:", link) or link.startswith("//"):
                continue  # http(s), mailto: not checked here
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{path.relative_to(REPO)}: {link} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{path.relative_to(REPO)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_stays_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_the_docs_speak_to_users_of_the_product():
    phrasing = re.compile(
        r"device tool|carry: \[|lent to|was lent|no gpu was|the task that|this session|development session"
        r"|timeout_s|\$OUT\b|gpu_wheels",
        re.I,
    )
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _doc_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if phrasing.search(line)
    ]
    assert not found, "\n".join(found)
