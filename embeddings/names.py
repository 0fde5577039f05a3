"""Names the command line needs before it imports torch (parsing `--help` should be instant)."""

DEFAULT_MODEL = "tf_efficientnet_lite0"
RUNTIMES = ("auto", "torch", "onnx")
QUANTIZE_PRECISIONS = ("int8", "fp16", "bf16", "none")
