"""Key mappings from the official (Stability "sgm") checkpoint layout to diffusers/transformers modules.

Each component module offers ``infer_*_config(shapes)`` and ``convert_*_key(name, tensor, config)``; names are
relative to the component's sgm prefix, and conversion works on meta tensors too.
"""
