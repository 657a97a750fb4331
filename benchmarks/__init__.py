"""rnnspec's benchmarks: `python -m benchmarks` (see benchmarks/README section in the
project README). Every comparison is a ratio measured side by side in one run."""
