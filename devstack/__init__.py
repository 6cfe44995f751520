"""The local stack for the demo, tests and benchmarks: start, watch and stop processes."""
