"""Errors of the recsys package (InputError is the project's one bad-input base, embeddings/errors.py)."""

from __future__ import annotations

from embeddings.errors import InputError

__all__ = ["InputError", "UnknownItem"]


class UnknownItem(InputError, KeyError):
    """An item id that neither the index nor the behaviour data knows (the API answers 404)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"unknown item {self.item_id!r}"
