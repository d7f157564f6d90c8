"""NBP: semi-autoregressive video generation by next-block prediction.

Plain PyTorch: nothing in this package imports Lightning, so the model, the
sampler and the metrics work in any PyTorch program.
"""

__version__ = "0.1.0"
