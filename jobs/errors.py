"""How the command line tells bad input (exit 2) from a failed job (exit 1)."""

from __future__ import annotations

from embeddings.errors import InputError


class UsageError(InputError):
    """Bad usage or bad input; the message names the file, row or option. Exit code 2."""


class JobFailed(Exception):
    """The job ran and failed; nothing was published. Exit code 1."""
