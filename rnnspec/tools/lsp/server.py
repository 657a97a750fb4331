"""`rnnspec lsp`: a Language Server Protocol server over stdio (pygls 2.x, lsprotocol).

Diagnostics on open and on every change; hover (a block's shapes, a constant's value, an
`expect` key's derived shape, a stack's summary, a user cell's symbolic shapes and
equations, a cell statement's sizes); go to definition (constants, cells, stacks, block
selectors, names in a cell body); the outline; completion; formatting with `rnnspec fmt`'s
layout.

The modules: `analysis` (a document's checked file, hover, definitions, the outline) and
`completion`, plain data without pygls; `cells`, the same for user cells;
`language_server`, the pygls `LanguageServer` subclass and its handlers. This module is
the entry point, importable without pygls.
"""

from __future__ import annotations

import sys

from rnnspec.tools.lsp.analysis import (
    DOCS_URL,
    Analysis,
    definition,
    derived_shape,
    hover_text,
    symbols,
)
from rnnspec.tools.lsp.completion import completions


def make_server():
    """The pygls server with every feature registered (imports pygls and lsprotocol)."""
    from rnnspec.tools.lsp.language_server import RnnspecServer

    return RnnspecServer()


def serve() -> int:
    """`rnnspec lsp`: serve over stdio until the client says exit."""
    try:
        server = make_server()
    except ImportError as exc:
        sys.stderr.write(f"error: `rnnspec lsp` needs pygls and lsprotocol ({exc}): "
                         "pip install 'rnnspec[lsp]'\n")
        return 2
    server.start_io()
    return 0


__all__ = ["DOCS_URL", "Analysis", "completions", "definition", "derived_shape", "hover_text",
           "make_server", "serve", "symbols"]
