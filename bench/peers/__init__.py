"""The same presence and usage rules in peer stream processors, for side-by-side benchmarks."""
