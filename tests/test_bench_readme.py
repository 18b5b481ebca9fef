"""The README's speed and memory table is the one generated from bench/results/*.json."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench_script(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_block(name: str) -> str:
    """The text between ``<!-- name -->`` and ``<!-- /name -->`` in README.md (a table a test keeps in step)."""
    found = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", (REPO / "README.md").read_text(), re.S)
    assert found, f"README.md lacks the <!-- {name} --> block"
    return found.group(1)


def test_readme_table_matches_the_benchmark_json() -> None:
    generator = _bench_script("readme_table")
    assert list((REPO / "bench" / "results").glob("*.json")), "no benchmark results in bench/results"
    stale = "README table is stale: paste the output of bench/readme_table.py"
    assert _readme_block("bench-table") == generator.table(), stale
    assert len(generator.rows()) >= 3


def test_will_it_fit_table_matches_the_simulated_json() -> None:
    generator = _bench_script("plan_table")
    rows = json.loads(generator.OUT.read_text())["rows"]
    stale = "stale: paste the output of python bench/plan_table.py --print"
    assert _readme_block("plan-table") == generator.markdown(rows), stale
    assert {(r["size"], r["frames"]) for r in rows} == {(s, f) for s in ("512x512", "576x1024") for f in (14, 61, 300)}


def test_budget_table_matches_the_simulated_json_and_every_plan_fits() -> None:
    generator = _bench_script("plan_table")
    budgets = json.loads(generator.OUT.read_text())["budgets"]
    stale = "stale: paste the output of python bench/plan_table.py --print"
    assert _readme_block("budget-table") == generator.budget_markdown(budgets), stale
    assert {(b["size"], b["vram_gb"]) for b in budgets} == {(s, g) for s in ("512x512", "576x1024") for g in (12, 8)}
    for b in budgets:
        assert b["fits"] and b["plan"]["peak_with_context_bytes"] <= b["vram_gb"] * 2**30, b["change"]
