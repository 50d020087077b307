"""TME's benchmarks: printed figures compared with a baseline measured in the same run."""
