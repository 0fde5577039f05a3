"""`python -m jobs`: the `recsys` command line."""

from jobs.cli import main

raise SystemExit(main())
