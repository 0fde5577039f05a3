"""What people run: the `recsys` command line (cli/), the nightly pipeline (nightly/), benchmarks
(bench/), the demo and its generated data (demo/), and real-photo fixtures (fixtures/)."""
