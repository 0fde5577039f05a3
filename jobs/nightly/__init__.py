"""The nightly pipeline: the run (run.py), its config (config.py), lock and state (state.py), report
(report.py)."""
