"""Errors of the recsys package (the command line maps InputError to exit code 2)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that the caller can fix: the message names the file, row, column or option."""


class UnknownItem(KeyError):
    """An item id that neither the index nor the behaviour data knows (the API answers 404)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"unknown item {self.item_id!r}"
