"""The README's speed and memory table, generated from the benchmark JSON files (one source of truth).

``python bench/readme_table.py`` prints the table; ``tests/test_bench_readme.py`` checks that README.md holds
exactly this text between its ``<!-- bench-table -->`` markers.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = (
    "| suite | case | machine | frames | size | window (strategy) | dtype | s/step | s/clip | peak memory |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _machine(info: dict) -> str:
    if info.get("cuda_available"):
        return str(info.get("device_name", "CUDA GPU"))
    return f"{info.get('cpu_model', 'CPU')}, {info.get('cpu_count', '?')} cores"


def rows(results: Path = RESULTS) -> list[str]:
    """One row per measured case; skipped suites get a row that says why."""
    out = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        machine = _machine(data.get("machine", {}))
        for suite, body in data.get("suites", {}).items():
            if "skipped" in body:
                out.append(f"| {suite} | not run: {body['skipped']} | {machine} | | | | | | | |")
                continue
            for case in body.get("cases", []):
                if "error" in case:
                    out.append(f"| {suite} | {case['name']}: {case['error']} | {machine} | | | | | | | |")
                    continue
                h, w = case["size"]
                memory = case.get("memory", {}).get("kind", "")
                unit = "CUDA max allocated" if "CUDA" in memory or "cuda" in case["device"] else "peak RSS"
                out.append(
                    f"| {suite} | {case['name']} | {machine} | {case['frames']} | {h}x{w} | "
                    f"{case['window']} ({case['strategy']}) | {case['dtype']} | {case['seconds_per_step']:.3f} | "
                    f"{case['seconds_per_clip']:.1f} | {case['peak_memory_mib']:.0f} MiB {unit} |"
                )
    return out


def table(results: Path = RESULTS) -> str:
    return "\n".join([HEADER, *rows(results)])


if __name__ == "__main__":
    print(table())
