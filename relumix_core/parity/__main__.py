"""``python -m relumix_core.parity PATH``: run one fixture (or key manifest) and print each max abs error.

PATH is the ``.json`` of a fixture. Its kind (unet, sampler, vae, clip, conditioner, pipeline, key manifest) is
recognised from its content, so new fixtures of a known kind work without changes. Exits 1 when a tolerance is
exceeded, 2 when the fixture cannot be recognised or read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .common import Fixture, ParityResult

Check = Callable[[Fixture], list[ParityResult]]


def fixture_kind(fixture: Fixture) -> str:
    """Recognise a fixture by the fields its JSON carries."""
    meta = fixture.meta
    if isinstance(meta.get("keys"), list):
        return "manifest"
    if "tiny_engine_yaml" in meta:
        return "pipeline"
    if "embedder_index_names" in meta:
        return "conditioner"
    if "sampler" in meta:
        return "sampler"
    if "ddconfig" in meta:
        return "vae"
    if "tiny_open_clip_model_config" in meta:
        return "clip"
    if "unet_config" in meta:
        return "unet"
    raise ValueError(f"{fixture.path}: unknown fixture kind (fields: {sorted(meta)[:8]} ...)")


def checker(kind: str) -> Check:
    from . import clip, conditioner, manifest, pipeline, sampler, unet, vae

    return {
        "manifest": manifest.check,
        "pipeline": pipeline.check,
        "conditioner": conditioner.check,
        "sampler": sampler.check,
        "vae": vae.check,
        "clip": clip.check,
        "unet": unet.check,
    }[kind]


def run(path: Path) -> tuple[str, list[ParityResult]]:
    fixture = Fixture.load(path)
    kind = fixture_kind(fixture)
    return kind, checker(kind)(fixture)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relumix_core.parity", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="fixture .json files (or key manifests)")
    args = parser.parse_args(argv)
    failed = False
    for path in args.paths:
        start = time.perf_counter()
        try:
            kind, results = run(path)
        except (OSError, ValueError, KeyError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 2
        print(f"{path} ({kind}): {len(results)} outputs")
        for r in results:
            mark = "ok  " if r.ok else "FAIL"
            print(f"  {mark} {r.name:<48} max abs err {r.max_abs_error:.3e}  (tol {r.tolerance:.0e})")
        bad = [r for r in results if not r.ok]
        failed |= bool(bad) or not results
        print(f"  {'FAILED' if bad or not results else 'passed'} in {time.perf_counter() - start:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
