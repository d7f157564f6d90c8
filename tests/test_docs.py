"""The docs are complete and current: every page is in the index, the configuration reference is
generated from the code and documents every field, measurement logs are dated."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))

import config_reference  # noqa: E402


def test_configuration_reference_is_up_to_date():
    # Fails when a config field or its comment changed without regenerating the page.
    assert config_reference.main(["--check"]) == 0, "run python3 scripts/config_reference.py"


def test_configuration_reference_documents_every_field():
    from nbp.config import NBPConfig
    from nbp.data.config import DatasetConfig
    from tokenizer.config import TokenizerConfig
    from tokenizer.losses import LossConfig

    page = (DOCS / "configuration.md").read_text()
    for cls in (NBPConfig, TokenizerConfig, LossConfig, DatasetConfig):
        rows = config_reference.dataclass_rows(cls)
        assert [r.name for r in rows] == [f.name for f in cls.__dataclass_fields__.values()], cls.__name__
        for row in rows:
            assert row.meaning, f"{cls.__name__}.{row.name} has no comment in the code"
            assert f"{row.name}` |" in page, f"{cls.__name__}.{row.name} missing from configuration.md"
    for heading, _, table in config_reference.sections():
        for line in table.splitlines()[2:]:
            assert not line.rstrip().endswith("|  |"), f"{heading}: undocumented {line.split('|')[1].strip()}"


def test_field_comments_are_read_from_the_code():
    # An independent reading of one field: the comment in nbp/config.py next to `p_uncond`.
    source = (ROOT / "nbp" / "config.py").read_text()
    comment = re.search(r"^\s*p_uncond: float = [\d.]+\s+#\s*(.+)$", source, flags=re.M).group(1)
    rows = {r.name: r for r in config_reference.dataclass_rows(__import__("nbp.config", fromlist=["x"]).NBPConfig)}
    assert rows["p_uncond"].meaning == comment.strip()
    assert rows["p_uncond"].default == "`0.1`"


def test_every_page_is_in_the_index():
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")) + sorted((DOCS / "experiments").glob("*.md")):
        if page.name == "README.md":
            continue
        assert f"({page.relative_to(DOCS).as_posix()})" in index, f"docs/README.md does not list {page.name}"


def test_measurement_logs_are_dated():
    for page in (DOCS / "experiments").glob("*.md"):
        assert re.match(r"\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md$", page.name), page.name


def test_no_absolute_paths_of_a_machine_in_the_docs():
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        text = page.read_text()
        assert not re.search(r"(?<![\w.])/(work|home|Users)/", text), page
