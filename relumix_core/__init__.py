"""ReLumix: propagate the light of one relit frame through a video with a fine-tuned SVD UNet.

A plain Python library (no ComfyUI imports): model, checkpoint loading and conversion, conditioning,
sampling and parity checks against the official code.
"""

__version__ = "0.1.0"
