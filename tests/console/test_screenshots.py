"""The docs' screenshot script keeps working: one scene, into a temporary folder."""

from __future__ import annotations

from pathlib import Path

from tests.console.conftest import distinct_colours
from tests.console.screenshots import SCENES, run


async def test_the_script_writes_the_pictures_of_a_scene(tmp_path: Path) -> None:
    assert set(SCENES) == {"playground", "compare", "usage", "health", "batches"}
    written = await run(tmp_path, ["compare"])
    assert written == ["compare", "compare-phone"]
    for name in written:
        assert distinct_colours(tmp_path / f"console-{name}.png") >= 32
