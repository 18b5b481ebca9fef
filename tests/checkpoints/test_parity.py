"""Every shared official-code fixture through ``python -m relumix_core.parity``'s own runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import OFFICIAL_FIXTURES

from relumix_core.parity.__main__ import main, run

FIXTURE_JSONS = sorted(OFFICIAL_FIXTURES.glob("*.json")) if OFFICIAL_FIXTURES.is_dir() else []


@pytest.mark.slow
@pytest.mark.parametrize("path", FIXTURE_JSONS, ids=[p.stem for p in FIXTURE_JSONS])
def test_fixture_within_tolerance(path: Path) -> None:
    kind, results = run(path)
    assert results, f"{path.name} ({kind}) compared nothing"
    bad = [(r.name, r.max_abs_error, r.tolerance) for r in results if not r.ok]
    assert not bad, f"{path.name} ({kind}) exceeds tolerance: {bad}"


def test_fixture_folder_present_or_skip(official_fixtures: Path) -> None:
    kinds = {run_kind for run_kind in ("unet_tiny", "sampler_tiny", "pipeline_tiny") if
             (official_fixtures / f"{run_kind}.json").exists()}
    assert kinds, "the shared fixture folder holds no known fixture"


@pytest.mark.slow
def test_cli_exit_codes(official_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(official_fixtures / "unet_tiny.json")]) == 0
    assert "output.f64" in capsys.readouterr().out
    unknown = tmp_path / "other.json"
    unknown.write_text('{"something": 1}')
    assert main([str(unknown)]) == 2
