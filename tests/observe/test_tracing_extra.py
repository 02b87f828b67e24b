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
    for name in ("opentelemetry", "opentelemetry.sdk"):  # as if not installed, even if imported
        monkeypatch.setitem(sys.modules, name, None)
    # --check-config: a broken check prints the limits and returns 0 instead of serving.
    assert main(["--config", str(config), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tracing.enabled" in err and "[tracing]" in err
