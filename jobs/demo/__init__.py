"""`recsys demo`: generated shop data (data.py) run through the whole product (run.py)."""
