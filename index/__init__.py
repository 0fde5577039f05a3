"""FAISS index: choosing, building, tuning, the versioned store, loading and search (DESIGN.md)."""

import logging

# faiss's loader logs its CPU-feature probing at INFO on every import; it is noise in our logs.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
