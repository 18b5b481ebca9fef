"""VAE parity: the tiny first stage and embedder autoencoders (``vae_tiny.json``), float32 and float64.

Every stored ``f32.*`` / ``f64.*`` output gets a counterpart; a stored output this check cannot reproduce is an
error, so nothing is skipped silently. The float64 run casts modules and inputs to float64 (the official float64
run normalises in float64 too, and upcasts the same float32 weights and inputs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKLTemporalDecoder

from ..checkpoints.convert.vae import infer_vae_config, load_first_stage, load_latent_encoder
from ..models.vae import (
    SCALE_FACTOR,
    LatentEncoder,
    VAEConfig,
    decode_latents,
    encode_first_stage,
    first_stage_moments,
    posterior_parameters,
)
from .common import Fixture, ParityResult, compare

FIRST_STAGE = "first_stage_model."
EMBEDDER = "conditioner.embedders.{}.encoder."
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _inferred_config(fixture: Fixture, prefix: str) -> VAEConfig:
    """Config from the weight shapes, cross-checked with the fixture's ddconfig (its core fields) when present."""
    weights = fixture.with_prefix(prefix)
    config = infer_vae_config({k: v.shape for k, v in weights.items()})
    ddconfig = fixture.meta.get("ddconfig")
    if ddconfig is not None:
        expected = VAEConfig.from_ddconfig(ddconfig, embed_dim=config.embed_dim).to_dict()
        ours = config.to_dict()
        fields = ("in_channels", "out_channels", "ch", "block_out_channels", "num_res_blocks", "z_channels")
        diff = {k: (ours[k], expected[k]) for k in fields if ours[k] != expected[k]}
        if diff:
            raise AssertionError(
                f"{prefix}: inferred config differs from the fixture ddconfig (ours, ddconfig): {diff}"
            )
    return config


def _outputs(
    vae: AutoencoderKLTemporalDecoder,
    emb3: LatentEncoder,
    emb4: LatentEncoder,
    t: dict[str, torch.Tensor],
    meta: dict,
    dtype: torch.dtype,
) -> dict[str, Callable[[], torch.Tensor]]:
    """Our counterpart of every stored output name (without the f32./f64. prefix), computed lazily."""
    x = t["input.frames"].to(dtype)
    z_scaled = t["input.z_scaled"].to(dtype)
    scale = float(meta.get("scale_factor", SCALE_FACTOR))
    frames = int(meta.get("T", z_scaled.shape[0]))
    chunk = meta.get("decode_chunk")
    noise = t["posterior_sample_noise"].to(dtype) if "posterior_sample_noise" in t else None
    mean, logvar, std = posterior_parameters(first_stage_moments(vae, x))
    moments3 = emb3.quant_conv(emb3.encoder(x))

    def chunked() -> torch.Tensor:
        if chunk is None:
            raise AssertionError("a chunked decode is stored but the fixture JSON has no 'decode_chunk'")
        return decode_latents(vae, z_scaled, int(chunk), scale)

    def given_noise() -> torch.Tensor:
        if noise is None:
            raise AssertionError("a sampled encode is stored but 'posterior_sample_noise' is not")
        return noise

    return {
        "first_stage.encoder_out": lambda: vae.encoder(x),
        "first_stage.posterior_mean": lambda: mean,
        "first_stage.posterior_logvar": lambda: logvar,
        "first_stage.posterior_std": lambda: std,
        "first_stage.encode_sampled": lambda: mean + std * given_noise(),
        "engine.encode_first_stage": lambda: encode_first_stage(vae, x, noise=given_noise(), scale_factor=scale),
        "first_stage.reconstruction_of_mode": lambda: vae.decode(mean, num_frames=frames).sample,
        "first_stage.decode_T": lambda: vae.decode(z_scaled / scale, num_frames=frames).sample,
        "engine.decode_first_stage.unchunked": lambda: decode_latents(vae, z_scaled, frames, scale),
        "engine.decode_first_stage.chunked": chunked,
        "embedder3.encoder_out": lambda: emb3.encoder(x),
        "embedder3.quant_conv_out": lambda: moments3,
        "embedder3.output": lambda: emb3(x),
        "embedder4.output_frame0": lambda: emb4(x[:1]).repeat_interleave(frames, dim=0),
    }


def _load(fixture: Fixture, configs: dict[str, VAEConfig], dtype: torch.dtype) -> tuple:
    """The three modules with the stored (float32) weights upcast to ``dtype`` before loading."""

    def weights(prefix: str) -> dict[str, torch.Tensor]:
        return {k: v.to(dtype) for k, v in fixture.with_prefix(prefix).items()}

    emb3, emb4 = EMBEDDER.format(3), EMBEDDER.format(4)
    return (
        load_first_stage(weights(FIRST_STAGE), configs[FIRST_STAGE]),
        load_latent_encoder(weights(emb3), configs[emb3]),
        load_latent_encoder(weights(emb4), configs[emb4]),
    )


def check(fixture: Fixture) -> list[ParityResult]:
    """One :class:`ParityResult` per stored f32/f64 output of a ``vae_tiny``-style fixture."""
    t = fixture.tensors
    configs = {p: _inferred_config(fixture, p) for p in (FIRST_STAGE, EMBEDDER.format(3), EMBEDDER.format(4))}
    results = []
    for tag, dtype in DTYPES.items():
        stored = sorted(k for k in t if k.startswith(f"{tag}."))
        if not stored:
            continue
        vae, emb3, emb4 = _load(fixture, configs, dtype)
        with torch.no_grad():
            ours = _outputs(vae, emb3, emb4, t, fixture.meta, dtype)
            for name in stored:
                key = name[len(tag) + 1 :]
                if key not in ours:
                    raise AssertionError(f"stored output '{name}' has no counterpart in parity.vae")
                results.append(compare(name, ours[key](), t[name]))
    return results
