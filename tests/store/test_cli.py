"""``python -m proxy usage``: the store's totals for an operator, as a table, CSV or JSON."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from proxy.__main__ import main
from proxy.store import UsageRow, open_store
from proxy.store.cli import dimensions, render, span_seconds, summarize

D = 1_700_006_400  # a UTC midnight: 2023-11-15
ROWS = [UsageRow(D, "alice", "a", "chat.completions", 2, 1, 10, 20, 1.25),
        UsageRow(D + 3600, "alice", "a", "embeddings", 1, 0, 5, 0, 0.5),
        UsageRow(D + 86400, "bob", "b", "chat.completions", 1, 0, 1, 1, 0.1)]


@pytest.mark.parametrize("since, seconds", [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600)])
def test_since(since: str, seconds: int) -> None:
    assert span_seconds(since) == seconds


@pytest.mark.parametrize("since", ["7", "0d", "d", "1y", "-1d"])
def test_bad_since(since: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        span_seconds(since)


def test_unknown_column_is_named() -> None:
    with pytest.raises(ValueError, match="'project'"):
        dimensions("key,project")


def test_summaries_group_by_the_chosen_columns() -> None:
    assert summarize(ROWS, ["key"]) == [
        {"key": "alice", "requests": 3, "errors": 1, "input_tokens": 15, "output_tokens": 20, "seconds": 1.75},
        {"key": "bob", "requests": 1, "errors": 0, "input_tokens": 1, "output_tokens": 1, "seconds": 0.1}]
    assert [(r["day"], r["model"]) for r in summarize(ROWS, ["day", "model"])] == [
        ("2023-11-15", "a"), ("2023-11-16", "b")]
    assert [r["hour"] for r in summarize(ROWS, ["hour"])][:2] == ["2023-11-15T00:00Z", "2023-11-15T01:00Z"]


def test_formats() -> None:
    records = summarize(ROWS, ["key"])
    columns = ["key", "requests", "errors", "input_tokens", "output_tokens", "seconds"]
    assert render(records, columns, "csv").splitlines() == [
        "key,requests,errors,input_tokens,output_tokens,seconds", "alice,3,1,15,20,1.75", "bob,1,0,1,1,0.1"]
    assert json.loads(render(records, columns, "json")) == records
    table = render(records, columns, "table").splitlines()
    assert table[0].split() == columns and table[1].split() == ["alice", "3", "1", "15", "20", "1.75"]
    assert render([], columns, "table") == "no usage recorded in this window"


def test_the_command_reads_the_store_the_config_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proxy.toml").write_text('[store]\nurl = "sqlite:///usage.db"\n')  # beside the config file
    hour = int(time.time()) // 3600 * 3600

    async def fill() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'usage.db'}")
        await store.add_usage([UsageRow(hour, "alice", "llama3.2", "chat.completions", 4, 0, 40, 80, 2.0),
                               UsageRow(hour - 30 * 86400, "old", "m", "chat.completions", 1)])
        await store.close()

    asyncio.run(fill())
    assert main(["usage", "--config", str(tmp_path / "proxy.toml"), "--by", "key,model", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"key": "alice", "model": "llama3.2", "requests": 4, "errors": 0, "input_tokens": 40,
         "output_tokens": 80, "seconds": 2.0}]  # the 30-day-old row is outside the default 7d


def test_no_store_file_is_an_error_and_none_is_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proxy.toml").write_text('[store]\nurl = "sqlite:///missing.db"\n')
    assert main(["usage", "--config", str(tmp_path / "proxy.toml")]) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
