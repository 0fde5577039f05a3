"""Errors of the embeddings package, and the one base for bad input across the project.

`InputError` is defined here, at the lowest layer, and re-exported by `index.errors` and
`recsys.errors`: the command line catches it once (exit code 2) and the API maps it to 422."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that the caller can fix: the message names the file, row, field or option (exit 2)."""


class ImageError(Exception):
    """One item's image could not be read or decoded; the item fails, the job goes on.

    `error_type` is a short stable code recorded in failures.parquet (for example `not_found`,
    `decode_error`, `too_many_pixels`, `too_large`, `http_error`, `timeout`).
    """

    def __init__(self, error_type: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable  # a network failure that may pass if tried again
