"""tools/lsp"""
