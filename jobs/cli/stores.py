"""The `--store` argument of every command: a local folder or an object-storage URL (index/remote.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from index.errors import InputError
from index.remote import parse_location

STORE_HELP = "the index store: a folder, or an object-storage URL such as s3://bucket/prefix"


def store_location(text: str) -> Path | str:
    """argparse type: a Path for a local folder (as before), the URL string for object storage."""
    try:
        return parse_location(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
