"""``[tracing] enabled`` without the ``tracing`` extra installed: one config error line, exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from proxy.__main__ import main


def test_tracing_without_the_extra_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text("[tracing]\nenabled = true\n")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tracing.enabled" in err and "[tracing]" in err
