"""The commands in the README and the docs are real: each names a real subcommand, options that
subcommand accepts and config files that exist; every link points at a file (and heading) that exists.

The README's Python example is executed on the demo's outputs in tests/test_demo.py.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from nbp.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Pages of reference documentation (their commands are checked); measurement logs under
# docs/experiments/ record what was run at the time, so only their links are checked.
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
ALL_MARKDOWN = [README, *DOC_PAGES, *sorted((ROOT / "docs" / "experiments").glob("*.md"))]
# Pages written on other branches at the same time as this test; linked before they exist.
# Remove an entry once its page is on the main branch.
PROVIDED_ELSEWHERE: set[str] = set()


def code_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    pattern = r"^```(" + "|".join(languages) + r")\n(.*?)^```"
    return [body for _, body in re.findall(pattern, text, flags=re.S | re.M)]


def shell_commands(text: str) -> list[str]:
    """Shell commands inside ```bash blocks: continuation lines and multi-line quotes joined."""
    commands = []
    for block in code_blocks(text, ("bash", "sh", "console")):
        pending = ""
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            pending += ("\n" if pending else "") + line
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # a quote spans lines: keep reading
                continue
            command = pending.strip().removeprefix("$ ")
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
        assert not pending, f"unbalanced quotes in a documented command: {pending!r}"
    return commands


def split_commands(line: str) -> list[list[str]]:
    """Shell words of each simple command on a line (split at |, &&, ||, ;), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= set("|&;"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    return commands + [words]


def nbp_invocations(text: str) -> list[list[str]]:
    """The arguments after `nbp` of every nbp command (also `python -m nbp` and `torchrun ... -m nbp`)."""
    calls = []
    for line in shell_commands(text):
        for words in split_commands(line):
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # leading VAR=value assignments
            if words[:1] == ["nbp"]:
                calls.append(words[1:])
            elif words[:3] in (["python", "-m", "nbp"], ["python3", "-m", "nbp"]):
                calls.append(words[3:])
            elif words[:1] == ["torchrun"] and "nbp" in words and "-m" in words:
                calls.append(words[words.index("nbp") + 1 :])
    return calls


def documented_invocations() -> list[tuple[str, list[str]]]:
    return [(page.relative_to(ROOT).as_posix(), words)
            for page in (README, *DOC_PAGES) for words in nbp_invocations(page.read_text())]


def resolve(words: list[str]) -> tuple[str, list[str]]:
    """(module path, the words after the subcommand), or fail naming the unknown subcommand."""
    table, rest = COMMANDS, list(words)
    while isinstance(table, dict):
        assert rest, f"command stops at a command group: nbp {' '.join(words)}"
        assert rest[0] in table, f"unknown subcommand {rest[0]!r} in: nbp {' '.join(words)}"
        table, rest = table[rest[0]], rest[1:]
    return table, rest


def parse_error(module_path: str, args: list[str]) -> str | None:
    """The parser's complaint about `args` (None when it accepts them); nothing is run."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            if module_path == "lightning_modules.cli":
                from lightning_modules.cli import main

                # LightningCLI parses the configs and flags, prints the merged config and stops.
                main([*args, "--print_config"])
            else:
                parser = importlib.import_module(module_path).build_parser("nbp")
                parser.parse_args(args)
    except SystemExit as stop:
        if stop.code not in (0, None):
            lines = stderr.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exit {stop.code}"  # the last line says what is wrong
    except Exception as err:  # parsers built with exit_on_error=False raise instead
        from nbp.errors import user_message

        return user_message(err) or repr(err)
    return None


def markdown_links(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # links inside code are not links
    return re.findall(r"\]\(([^)\s]+)\)", text)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_readme_has_two_command_quick_start():
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = code_blocks(section, ("bash",))[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert "nbp demo" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci, "CI must run exactly the README's test command"


def test_readme_is_short_and_has_its_sections():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    for section in ("Quick start", "From Python", "How it fits together", "Use the released checkpoints",
                    "Reproduce the paper", "Results", "Cheat-sheet", "Documentation", "Citation", "Licence"):
        assert f"\n## {section}\n" in text, section


def test_the_paper_recipe_covers_every_step_for_both_datasets():
    section = README.read_text().split("## Reproduce the paper", 1)[1].split("\n## ", 1)[0]
    calls = [" ".join(words) for words in nbp_invocations(section)]
    for dataset in ("ucf101", "k600"):
        assert any(c.startswith(f"train fit --config configs/tokenizer/{dataset}.yaml") for c in calls), dataset
        assert any(c.startswith("tokenize") and dataset in c for c in calls), dataset
        assert any(c.startswith(f"train fit --config configs/nbp/{dataset}_") for c in calls), dataset
        assert any(c.startswith(f"eval {dataset}") for c in calls), dataset


def test_documented_commands_are_found():
    per_page = {}
    for page, _ in documented_invocations():
        per_page[page] = per_page.get(page, 0) + 1
    assert per_page.get("README.md", 0) >= 15
    for page in ("docs/training.md", "docs/sampling.md", "docs/evaluation.md", "docs/local-runs.md"):
        assert per_page.get(page, 0) >= 2, (page, per_page)


@pytest.mark.parametrize("page, words", documented_invocations(), ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]))
def test_documented_command_is_real(page, words):
    module_path, args = resolve(words)
    for i, word in enumerate(args):
        value = word.split("=", 1)[1] if word.startswith("--config=") else None
        if word == "--config" and i + 1 < len(args):
            value = args[i + 1]
        if value:
            assert (ROOT / value).is_file(), f"{page} names a missing config {value}"
    error = parse_error(module_path, args)
    assert error is None, f"{page}: nbp {' '.join(words)}\n-> {error}"


@pytest.mark.parametrize("page", ALL_MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_at_existing_files_and_headings(page):
    for link in markdown_links(page.read_text()):
        if re.match(r"^[a-z]+:", link):
            continue  # web addresses
        path_part, _, anchor = link.partition("#")
        target = (page.parent / path_part).resolve() if path_part else page
        relative = target.relative_to(ROOT).as_posix() if target.is_relative_to(ROOT) else str(target)
        if relative in PROVIDED_ELSEWHERE and not target.exists():
            continue
        assert target.exists(), f"{page.relative_to(ROOT)} links to a missing {link}"
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target.read_text()), f"{page.relative_to(ROOT)}: no heading for {link}"


def test_provided_elsewhere_lists_only_missing_pages():
    # Once one of these pages has arrived, its links are checked like any other.
    assert not any((ROOT / page).exists() for page in PROVIDED_ELSEWHERE)
