"""The docs' screenshots are made by scripts/screenshots.py: it still runs, and takes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_screenshot_script_takes_every_main_page(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts/screenshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    taken = module.shoot(tmp_path)
    assert [p.stem for p in taken] == ["runs", "run", "step", "timeline", "fanout", "failed",
                                        "queues", "workers"]  # fmt: skip
    for path in taken:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    for name in ("runs", "run", "step", "timeline", "fanout"):  # committed for the README
        assert (ROOT / "docs" / "img" / f"{name}.png").exists()
