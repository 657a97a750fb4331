"""backends/torch"""
