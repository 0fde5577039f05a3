"""Names the command line needs before it imports torch (parsing `--help` should be instant).

Two words, two ideas: a *runtime* runs the model (torch or onnxruntime); an *engine* runs the whole
embed job (on this machine, or through Ray Data).
"""

DEFAULT_MODEL = "tf_efficientnet_lite0"
MODEL_RUNTIMES = ("torch", "onnx")  # what a model artifact runs on (model.json's "engine" key)
RUNTIMES = ("auto", *MODEL_RUNTIMES)  # `--runtime`: auto is onnxruntime on the CPU, torch on a GPU
ENGINES = ("local", "ray")  # `--engine`
DEVICES = ("auto", "cpu", "cuda")  # `--device`: auto is the GPU when there is one
QUANTIZE_PRECISIONS = ("int8", "fp16", "bf16", "none")
