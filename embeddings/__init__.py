"""Image bytes to unit vectors: catalogues, decoding, preprocessing, backbones and their weights,
compression, the torch and onnxruntime runtimes, the local and Ray engines, embedding-set files.
Imports nothing of ours (DESIGN.md layers)."""
