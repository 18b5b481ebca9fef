"""The networks: ReLumix UNet (diffusers), temporal VAE (diffusers) and CLIP image encoder (transformers)."""
