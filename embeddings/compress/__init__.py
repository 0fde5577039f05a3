"""Compression of a backbone: distillation, channel pruning, quantization, PCA projection, report."""
