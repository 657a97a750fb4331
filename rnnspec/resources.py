"""The package's own facts: its version, and the user's cache folder, where the parser and
the templates keep their compiled forms. A leaf module (it imports nothing of rnnspec), so
every stage can read the version without importing the package's API."""

from __future__ import annotations

VERSION = "0.1.0"  # rnnspec.__version__; pyproject.toml's version is the same


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
