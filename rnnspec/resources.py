"""The user's cache folder, where the parser and the templates keep their compiled forms."""

from __future__ import annotations


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
