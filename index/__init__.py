"""FAISS index: choosing, building, tuning, the versioned store, loading and search (DESIGN.md)."""

import logging
import os

# OpenMP threads that wait by spinning burn cores that other processes (a server's workers, other
# jobs) need; with PASSIVE they sleep. Read by FAISS's own libgomp when faiss is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# faiss's loader logs its CPU-feature probing at INFO on every import; it is noise in our logs.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
