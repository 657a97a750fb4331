"""Where the grammar and the templates live: inside the installed package, or beside it
in a source checkout (the repository keeps them at its top level)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(folder: str) -> Path:
    """`grammar` or `templates`: the installed copy first, then the checkout's."""
    for candidate in (_PACKAGE / folder, _PACKAGE.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rnnspec is installed without its {folder}/ folder")


def cache_folder() -> str | None:
    """rnnspec's folder in the user's cache (never the package folder), or None."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "rnnspec")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None
