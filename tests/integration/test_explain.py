"""``cxl explain`` lists the promises behind a ``gap`` figure; their amounts add up to it."""

from __future__ import annotations

import json

import pytest

from cxl.synthetic import HistoryGenerator
from ledger.settings import Settings
from projections.trust_gap import MEASURES
from tests.events import write_jsonl
from tests.integration.conftest import cxl_env, run_cxl

AS_OF = "2026-06-15T00:00:00Z"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("explain")
    settings = Settings(home=root / "home", kek_file=root / "kek")
    env = cxl_env(settings)
    write_jsonl(root / "h.jsonl", HistoryGenerator(customers=150, seed=11).events())
    assert run_cxl(["ingest", str(root / "h.jsonl")], env).returncode in (0, 3)
    return env


def _json(env: dict[str, str], args: list[str]) -> list[dict]:
    done = run_cxl([*args, "--format", "json"], env)
    assert done.returncode == 0, done.stderr
    rows: list[dict] = json.loads(done.stdout)
    return rows


@pytest.mark.parametrize(
    ("by", "where_of"),
    [
        ("made_by", lambda r: f"made_by={r['made_by']}"),
        ("channel,kind", lambda r: f"channel={r['channel']},kind={r['kind']}"),
        ("due_month", lambda r: f"due_month={r['due_month']}"),
    ],
)
def test_explained_amounts_add_up_to_the_gap_figures(
    env: dict[str, str], by: str, where_of
) -> None:
    for figure in _json(env, ["gap", "--as-of", AS_OF, "--by", by])[:4]:
        promises = _json(env, ["explain", "--as-of", AS_OF, "--where", where_of(figure)])
        assert promises, figure
        for measure in MEASURES:
            assert round(sum(p[measure] for p in promises), 9) == figure[measure], (figure, measure)
        for promise in promises:
            assert "promise.made" in {e["type"] for e in promise["events"]}
            assert all(len(e["hash"]) == 64 and e["seq"] >= 1 for e in promise["events"])


def test_a_status_lists_the_promises_it_counts_with_their_sealed_events(
    env: dict[str, str],
) -> None:
    (overall,) = _json(env, ["gap", "--as-of", AS_OF])
    broken = _json(env, ["explain", "--as-of", AS_OF, "--status", "broken"])
    assert broken and {p["status"] for p in broken} == {"broken"}
    kinds = {e["type"] for p in broken for e in p["events"]}
    assert kinds & {"promise.broken", "promise.renegotiated"}
    every = _json(env, ["explain", "--as-of", AS_OF])
    assert round(sum(p["broken"] for p in every), 9) == overall["broken"]
    event = broken[0]["events"][-1]
    proof = run_cxl(["proof", event["event_id"]], env)
    assert proof.returncode == 0 and json.loads(proof.stdout)["seal_hash"] == event["hash"]
    wrong = run_cxl(["explain", "--where", "team=x"], env)
    assert wrong.returncode == 2 and "--where 'team=x'" in wrong.stderr
    table = run_cxl(["explain", "--as-of", AS_OF, "--status", "broken"], env)
    assert table.returncode == 0 and broken[0]["promise_id"] in table.stdout
