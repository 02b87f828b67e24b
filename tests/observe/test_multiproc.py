"""``proxy/observe/multiproc.py``: one directory per run, emptied at start, removed or emptied at stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.observe.multiproc import MULTIPROC_ENV, MultiprocDir


def test_a_run_without_a_directory_gets_its_own_and_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    run = MultiprocDir()
    assert run.owned and run.path.is_dir() and os.environ[MULTIPROC_ENV] == str(run.path)
    (run.path / "counter_1.db").write_bytes(b"x")
    run.close()
    assert not run.path.exists() and MULTIPROC_ENV not in os.environ


def test_the_operators_directory_is_emptied_at_start_and_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_4242.db").write_bytes(b"an earlier run")
    (tmp_path / "notes.txt").write_text("not ours")
    run = MultiprocDir()
    assert not run.owned and not list(tmp_path.glob("*.db"))
    (tmp_path / "gauge_livesum_7.db").write_bytes(b"x")
    run.close()
    assert not list(tmp_path.glob("*.db")) and (tmp_path / "notes.txt").exists()
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)
