"""Values in tables are publishers' data: printed as they are, never read as console markup."""

from __future__ import annotations

import pytest

from cxl.output import Format, emit_rows, report_rejects


@pytest.mark.parametrize("value", ["[/]", "[bold red]forged[/bold red]", ":100: team", "[link=x]a"])
def test_table_cells_print_markup_and_emoji_codes_literally(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_rows([{"team": value, "promises": 3}], Format.table, title="[red]t")
    printed = capsys.readouterr().out
    assert value in printed
    assert "[red]t" in printed
    assert "\N{HUNDRED POINTS SYMBOL}" not in printed


def test_rejected_record_messages_print_literally(capsys: pytest.CaptureFixture[str]) -> None:
    report_rejects(["f.jsonl:1: data.made_by: [/] :100:"])
    assert "f.jsonl:1: data.made_by: [/] :100:" in capsys.readouterr().err
