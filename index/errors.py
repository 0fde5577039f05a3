"""Errors of the index package."""

from __future__ import annotations

from embeddings.errors import InputError

__all__ = ["IndexLoadError", "InputError", "RecallNotMet", "UpdateNotSupported"]


class IndexLoadError(Exception):
    """A stored version cannot be loaded (missing, incomplete or corrupt); the message says which file."""


class UpdateNotSupported(InputError):
    """The version's index type cannot do the asked update in place (HNSW cannot remove items)."""


class RecallNotMet(Exception):
    """The built version did not reach the target recall; it is kept in the store but not published."""

    def __init__(self, version: str, recall: float, target: float, detail: str) -> None:
        super().__init__(
            f"version {version} reaches recall@10 {recall:.3f} < target {target:.3f} ({detail}); "
            "built but not published"
        )
        self.version = version
        self.recall = recall
        self.target = target
