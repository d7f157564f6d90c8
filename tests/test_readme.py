"""Every command the README shows names a real subcommand, and every config it names exists."""

import re
import shlex
from pathlib import Path

import pytest

from nbp.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """Shell commands inside ```bash blocks: continuation lines and multi-line quotes joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", README, flags=re.S):
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
        assert not pending, f"unbalanced quotes in README command: {pending!r}"
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


def nbp_invocations() -> list[list[str]]:
    calls = []
    for line in readme_commands():
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


def test_readme_has_two_command_quick_start():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert any("nbp demo" in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci, "CI must run exactly the README's test command"


def test_readme_shows_many_nbp_commands():
    assert len(nbp_invocations()) >= 10


@pytest.mark.parametrize("words", nbp_invocations(), ids=lambda w: " ".join(w[:3]))
def test_readme_command_is_real(words):
    table = COMMANDS
    for word in words:
        if not isinstance(table, dict):
            break
        assert word in table, f"README uses unknown subcommand {word!r}"
        table = table[word]
    assert not isinstance(table, dict), f"README command stops at a command group: {words}"
    for i, word in enumerate(words):
        value = word.split("=", 1)[1] if word.startswith("--config=") else None
        if word == "--config" and i + 1 < len(words):
            value = words[i + 1]
        if value and not value.startswith("$") and "<" not in value:
            assert (ROOT / value).is_file(), f"README names missing config {value}"
