"""`hf://owner/repo/file` references to the released files, fetched into the Hugging Face cache.

huggingface_hub is optional: without it, offline (HF_HUB_OFFLINE=1) or without network,
the user is told in one line which file to download from which repository by hand.
"""

from __future__ import annotations

from pathlib import Path

from nbp.errors import UserError

SCHEME = "hf://"


def parse_reference(ref: str) -> tuple[str, str]:
    """'hf://owner/repo/path/in/repo' -> ('owner/repo', 'path/in/repo')."""
    parts = ref[len(SCHEME):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise UserError(f"{ref!r} is not a Hugging Face file reference; expected hf://OWNER/REPO/FILE, "
                        "e.g. hf://ShuhuaiRen/NBP-ucf-base/ucf_base_nbp16_hybrid.ckpt")
    return f"{parts[0]}/{parts[1]}", parts[2]


def _by_hand(repo: str, filename: str, why: str) -> UserError:
    return UserError(f"cannot fetch {filename} from the Hugging Face repo {repo} ({why}); download it by hand from "
                     f"https://huggingface.co/{repo}/resolve/main/{filename} and pass the local path")


def resolve(path: str | Path) -> Path:
    """A local path unchanged; an hf:// reference downloaded (or found in the cache) and returned as a path."""
    text = str(path)
    if not text.startswith(SCHEME):
        return Path(path)
    repo, filename = parse_reference(text)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        raise _by_hand(repo, filename, "huggingface_hub is not installed; pip install huggingface_hub") from None
    hub_logging.set_verbosity_error()  # its retry warnings would bury the one line the user needs
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as err:  # offline mode, no network, missing file: the fix is the same
        raise _by_hand(repo, filename, type(err).__name__) from None
