"""Side-by-side benchmark of GS-LoRA and its baselines (see
``benchmarks/README.md``): cost measurements and the results table."""
