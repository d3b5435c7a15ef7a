"""``cxl serve`` over real HTTP: ingest, who may write and read, hostile bodies, reads, operations."""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ledger.settings import Settings
from tests.events import event_dict
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.kafka_helpers import read_all
from tests.integration.serve_helpers import Served, add_key, post, serving, stop

pytestmark = pytest.mark.integration


def _promise(customer: str, team: str = "http-team", **kw: object) -> dict:
    return event_dict(
        "promise.made",
        customer_id=customer,
        occurred_at="2026-01-05T10:00:00Z",
        made_by=team,
        due_at="2026-01-20T10:00:00Z",
        **kw,
    )


# -- ingest -----------------------------------------------------------------------------------


def test_a_valid_batch_is_accepted_and_sealed(served: Served) -> None:
    events = [_promise(f"c-{uuid.uuid4().hex[:6]}") for _ in range(5)]
    with served.writes() as client:
        answer = post(client, events)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": [e["event_id"] for e in events]}
    served.wait_sealed([e["event_id"] for e in events])


def test_a_partly_invalid_batch_appends_the_valid_ones_and_names_each_problem(
    served: Served,
) -> None:
    good = _promise("c-partial")
    bad_weight = _promise("c-partial", weight=-1)
    no_type = {k: v for k, v in _promise("c-partial").items() if k != "type"}
    reused = {**good, "data": {**good["data"], "made_by": "someone-else"}}
    with served.writes() as client:
        answer = post(client, [bad_weight, good, no_type, 7, good, reused])
    assert answer.status_code == 422
    body = answer.json()
    assert body["accepted"] == [good["event_id"], good["event_id"]]  # a repeat is harmless
    problems = {(e["index"], e["field"]) for e in body["errors"]}
    assert (0, "data.weight") in problems
    assert (2, "type") in problems
    assert (5, "event_id") in problems
    assert {e["index"] for e in body["errors"]} == {0, 2, 3, 5}
    served.wait_sealed([good["event_id"]])
    with served.reads() as client:
        assert client.get(f"/v1/proof/{bad_weight['event_id']}").status_code == 404


def test_ten_thousand_events_through_a_retrying_client_are_sealed_exactly_once(
    served: Served,
) -> None:
    """Batches of 100 with a client that retries on timeouts, and also re-sends a random fifth of
    the batches whose answer it did receive (as a client that lost the answer would)."""
    rng = random.Random(9)
    events = [
        _promise(f"bulk-{i % 700}", team="bulk", promise_id=f"bulk-p-{i}") for i in range(10_000)
    ]
    sent = 0
    retries = 0
    with served.client(served.write_key, timeout=10.0) as client:
        for start in range(0, len(events), 100):
            batch = events[start : start + 100]
            for attempt in range(2 if rng.random() < 0.2 else 1):
                while True:
                    try:
                        answer = post(client, batch)
                    except httpx.TimeoutException:
                        retries += 1
                        continue
                    if answer.status_code == 503:
                        retries += 1
                        time.sleep(float(answer.headers.get("Retry-After", "1")))
                        continue
                    break
                assert answer.status_code == 202, answer.text
                sent += len(batch) * (attempt == 0)
    assert sent == 10_000
    served.wait_projected(120)
    ids = [e["event_id"] for e in events]
    deadline = time.monotonic() + 120
    while True:
        done = run_cxl(
            [
                "sql",
                "SELECT count(*) AS n, count(DISTINCT promise_id) AS d FROM promises "
                "WHERE made_by = 'bulk'",
                "--format",
                "json",
            ],
            served.env,
        )
        assert done.returncode == 0, done.stderr
        counts = json.loads(done.stdout)[0]
        if counts["n"] == 10_000 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts == {"n": 10_000, "d": 10_000}
    with served.reads() as client:
        for event_id in rng.sample(ids, 20):
            proof = client.get(f"/v1/proof/{event_id}")
            assert proof.status_code == 200
        history = client.get("/v1/customers/bulk-1/history", params={"limit": 1000}).json()
    assert len(history) == len({e["event_id"] for e in events if e["customer_id"] == "bulk-1"})


# -- who may write and read -------------------------------------------------------------------


def test_the_auth_matrix(served: Served) -> None:
    event = _promise("c-auth")
    other_source = {**_promise("c-auth"), "source": "someone-else"}
    with served.client() as anonymous:
        assert post(anonymous, event).status_code == 401
        assert anonymous.get("/v1/gap").status_code == 401
    unknown = "cxl_000000000000_" + "A" * 43
    with served.client(unknown) as client:
        assert post(client, event).status_code == 401
        assert client.get("/v1/gap").status_code == 401
    with served.client("not a key at all") as client:
        assert client.get("/v1/gap").status_code == 401
    with served.writes() as client:
        refused = post(client, [event, other_source])
        assert refused.status_code == 403
        assert "someone-else" in refused.json()["error"]
        assert client.get("/v1/gap").status_code == 403  # a write key cannot read
    with served.reads() as client:
        assert post(client, event).status_code == 403  # a read key cannot write
        assert client.get("/v1/gap").status_code == 200
    # Nothing of the refused batch was appended.
    time.sleep(1.5)
    with served.reads() as client:
        assert client.get(f"/v1/proof/{event['event_id']}").status_code == 404


def test_a_revoked_key_is_refused_at_once(served: Served) -> None:
    key = add_key(served.env, "--read")
    with served.client(key) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/verify").status_code in (200, 503)
        done = run_cxl(["keys", "revoke", key.split("_")[1]], served.env)
        assert done.returncode == 0, done.stderr
        assert client.get("/v1/gap").status_code == 401
    listed = run_cxl(["keys", "list", "--format", "json"], served.env)
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[key.split("_")[1]]["revoked_at"] is not None
    assert key not in listed.stdout  # keys are never shown again


def test_a_rate_limited_key_gets_429_with_retry_after(served: Served) -> None:
    key = add_key(served.env, "--read", "--rate", "2")
    with served.client(key) as client:
        statuses = [client.get("/v1/verify") for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1


# -- hostile bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"[" * 100_000 + b"]" * 100_000, 400),
        ("application/json", b'{"a": "' + b"x" * 5_000_000 + b'"}', 413),
        ("application/json", b'[{"event_id": "\xff\xfe"}]', 400),
        ("text/plain", b"[]", 415),
        ("application/x-www-form-urlencoded", b"a=1", 415),
        ("application/json", b"not json", 400),
        ("application/json", b"", 400),
        ("application/json", b"[]", 400),
        ("application/json", b'"a string"', 400),
        ("application/json", b"[{}] trailing", 400),
        ("application/json", b"\xef\xbb\xbf[{}]", 400),
        ("application/json", b"[" + b"{}," * 1001 + b"{}]", 400),
    ],
    ids=[
        "deep-nesting",
        "huge-string",
        "invalid-utf8",
        "text-plain",
        "form",
        "not-json",
        "empty",
        "empty-array",
        "not-an-object",
        "trailing-garbage",
        "byte-order-mark",
        "too-many-events",
    ],
)
def test_hostile_bodies_get_a_4xx_with_a_reason(
    served: Served, content_type: str, body: bytes, status: int
) -> None:
    with served.writes() as client:
        answer = client.post("/v1/events", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


def test_strict_json_inside_an_item_is_named_per_item(served: Served) -> None:
    event = _promise("c-strict")
    text = json.dumps(event)
    duplicate_key = text.replace('"type":', '"type": "promise.made", "type":', 1)
    unweighted = _promise("c-strict")
    unweighted["data"].pop("weight", None)
    not_finite = json.dumps(unweighted).replace('"data": {', '"data": {"weight": NaN, ', 1)
    body = f"[{duplicate_key}, {not_finite}]".encode()
    with served.writes() as client:
        answer = client.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    reasons = {e["index"]: e["reason"] for e in answer.json()["errors"]}
    assert "duplicate key" in reasons[0]
    assert "NaN" in reasons[1]


# -- reads ------------------------------------------------------------------------------------


def test_reads_have_the_cli_json_shapes(served: Served) -> None:
    events = [_promise("c-shape", team="shape-team", promise_id=f"s{i}") for i in range(3)]
    with served.writes() as client:
        assert post(client, events).status_code == 202
    served.wait_sealed([e["event_id"] for e in events])
    served.wait_projected()
    as_of = "2026-06-30T00:00:00Z"
    with served.reads() as client:
        gap = client.get("/v1/gap", params={"as_of": as_of, "by": "made_by"}).json()
        explained = client.get(
            "/v1/explain", params={"as_of": as_of, "where": "made_by=shape-team"}
        ).json()
        history = client.get("/v1/customers/c-shape/history").json()
        proof = client.get(f"/v1/proof/{events[0]['event_id']}").json()
        bad = client.get("/v1/gap", params={"as_of": "yesterday"})
    cli = {
        "gap": ["gap", "--as-of", as_of, "--by", "made_by", "--format", "json"],
        "explain": [
            "explain",
            "--as-of",
            as_of,
            "--where",
            "made_by=shape-team",
            "--format",
            "json",
        ],
        "history": ["history", "c-shape", "--format", "json"],
        "proof": ["proof", events[0]["event_id"]],
    }
    printed = {}
    for name, args in cli.items():
        done = run_cxl(args, served.env)
        assert done.returncode == 0, done.stderr
        printed[name] = json.loads(done.stdout)
    assert gap == printed["gap"]
    assert explained == printed["explain"] and len(explained) == 3
    assert history == printed["history"]
    assert proof["leaf_index"] == printed["proof"]["leaf_index"]
    assert bad.status_code == 400 and "as_of" in bad.json()["error"]


def test_the_keepers_reads_have_the_cli_json_shapes_and_the_alerter_publishes(
    served: Served,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    customer = f"c-risk-{uuid.uuid4().hex[:6]}"
    soon = event_dict(
        "promise.made",
        customer_id=customer,
        occurred_at=(now - timedelta(hours=1)).isoformat(),
        made_by="risk-team",
        due_at=(now + timedelta(hours=2)).isoformat(),
    )
    with served.writes() as client:
        assert post(client, [soon]).status_code == 202
    served.wait_sealed([soon["event_id"]])
    served.wait_projected()
    as_of = now.isoformat()
    asked = {
        "at-risk": ("/v1/at-risk", {"where": f"customer={customer}"}),
        "inflation": ("/v1/inflation", {"by": "kind", "months": "2"}),
        "complaints": ("/v1/complaints", {"by": "made_by"}),
        "contact": ("/v1/contact", {}),
    }
    with served.reads() as client:
        answers = {
            name: client.get(path, params={"as_of": as_of, **params}).json()
            for name, (path, params) in asked.items()
        }
        bad = client.get("/v1/at-risk", params={"horizon": "soon"})
    for name, (_, params) in asked.items():
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]
        done = run_cxl([name, "--as-of", as_of, *flags, "--format", "json"], served.env)
        assert done.returncode == 0, done.stderr
        assert answers[name] == json.loads(done.stdout), name
    (risky,) = answers["at-risk"]
    assert risky["promise_id"] == soon["data"]["promise_id"] and risky["hours_left"] == 2.0
    assert bad.status_code == 400 and bad.json()["field"] == "horizon"
    deadline = time.monotonic() + 30
    while True:
        alerts = [
            json.loads(r.value)
            for r in read_all(served.env["CXL_KAFKA_BOOTSTRAP"], served.env["CXL_ALERTS_TOPIC"], 5)
        ]
        mine = [a for a in alerts if a["customer_id"] == customer]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [(a["type"], a["promise_id"]) for a in mine] == [
        ("promise.at_risk", soon["data"]["promise_id"])
    ]


def test_verify_checkpoint_and_proof_agree(served: Served) -> None:
    with served.reads() as client:
        deadline = time.monotonic() + 60
        while (verify := client.get("/v1/verify")).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        note = client.get("/v1/checkpoints/latest")
    assert verify.status_code == 200
    row = verify.json()[0]
    assert row["ok"] is True and row["events"] >= 0
    assert int(verify.headers["X-Cxl-Verified-Events"]) == row["events"]
    assert note.status_code == 200
    origin, size, root = note.text.splitlines()[:3]
    assert origin.startswith("cx-ledger/") and int(size) >= 1 and root


def test_dead_letters_are_listed_with_their_reasons_and_no_personal_text(served: Served) -> None:
    from kafka import KafkaProducer

    settings_topic = served.env["CXL_EVENTS_TOPIC"]
    bootstrap = served.env["CXL_KAFKA_BOOTSTRAP"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    marker = uuid.uuid4().hex
    for partition in range(3):
        junk = {"junk": marker, "data": {"description": "secret-PII"}}
        producer.send(settings_topic, value=json.dumps(junk).encode(), partition=partition)
    producer.send(settings_topic, value=b"[" * 5000 + b"]" * 5000, partition=0)  # not a page's end
    producer.flush(10)
    producer.close()
    found: list[dict] = []
    deadline = time.monotonic() + 60
    with served.reads() as client:
        while len(found) < 3 and time.monotonic() < deadline:
            found = []
            url: str | None = "/v1/dead-letters?limit=2"
            while url:
                page = client.get(url)
                assert page.status_code == 200
                found += [r for r in page.json() if marker in r["value"]]
                url = page.links.get("next", {}).get("url")
            time.sleep(0.5)
    assert len(found) == 3
    assert all(r["reason"].startswith("type:") for r in found), found
    assert {r["origin_partition"] for r in found} == {0, 1, 2}
    assert all("secret-PII" not in r["value"] for r in found)  # free text withheld from readers
    assert all(r["withheld_fields"] == ["data.description"] for r in found)
    with served.reads() as client:
        assert client.get("/v1/dead-letters", params={"partition": 3}).status_code == 404


# -- operations -------------------------------------------------------------------------------


def test_health_readiness_and_metrics(served: Served) -> None:
    with served.client() as client:
        assert client.get("/healthz").json()["status"] == "up"
        assert client.head("/healthz").status_code == 200
        ready = client.get("/readyz")
        metrics = client.get("/metrics").text
    assert ready.status_code == 200 and ready.json()["ok"] is True
    for name in (
        "cxl_events_sealed_total",
        "cxl_events_rejected_total",
        "cxl_events_duplicates_total",
        "cxl_events_conflicts_total",
        "cxl_events_dead_lettered_total",
        'cxl_consumer_lag{partition="0"}',
        "cxl_projector_lag",
        'cxl_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz",status="200"}',
    ):
        assert name in metrics, name


def test_the_cli_reads_current_figures_while_the_server_runs(served: Served) -> None:
    """One writer, many readers: `cxl gap` in another process sees what was just sealed."""
    team = f"readers-{uuid.uuid4().hex[:6]}"
    events = [_promise(f"c-{team}", team=team, promise_id=f"r{i}") for i in range(4)]
    with served.writes() as client:
        assert post(client, events).status_code == 202
    served.wait_sealed([e["event_id"] for e in events])
    for command in (
        ["gap", "--by", "made_by", "--format", "json"],
        ["sql", f"SELECT count(*) AS n FROM promises WHERE made_by = '{team}'", "--format", "json"],
    ):
        done = run_cxl(command, served.env)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        if command[0] == "gap":
            assert {r["made_by"]: r["made"] for r in rows}[team] == 4.0
        else:
            assert rows == [{"n": 4}]
    report = run_cxl(["report", "--no-verify", "--to", str(_tmp(served) / "r.html")], served.env)
    assert report.returncode == 0, report.stderr


def _tmp(served: Served) -> Path:
    return Path(served.env["CXL_HOME"]).parent


def test_sigterm_on_the_embedded_broker_seals_everything_accepted_and_exits_0(
    tmp_path: Path,
) -> None:
    """With the embedded broker (memory only), what was accepted must be sealed before the broker
    goes: SIGTERM drains the events topic, then exits 0."""
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek", partitions=2)
    env = cxl_env(settings)  # no CXL_KAFKA_BOOTSTRAP; two ingest worker processes (the default)
    events = [_promise(f"c-term-{i % 50}", team="term", promise_id=f"t{i}") for i in range(3000)]
    with serving(env) as running:
        with running.writes() as client:
            for start in range(0, len(events), 500):
                assert post(client, events[start : start + 500]).status_code == 202
        started = time.monotonic()
        code = stop(running)
        took = time.monotonic() - started
    assert code == 0, "".join(running.log)
    assert took < 30, took
    assert not (settings.home / "projections.served.duckdb").exists()  # only while it runs
    done = run_cxl(["verify", "--format", "json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["events"] == 3000


def test_a_broker_outage_is_503_with_retry_after_logged_and_the_server_lives_on(
    tmp_path: Path,
) -> None:
    from consumers.broker import EmbeddedBroker

    with EmbeddedBroker(log_dir=tmp_path) as broker:
        settings = Settings(
            home=tmp_path / "home",
            kafka_bootstrap=broker.bootstrap,
            kek_file=tmp_path / "kek",
            partitions=2,
        )
        env = cxl_env(
            settings, CXL_INGEST_WORKERS="1", CXL_KAFKA_TIMEOUT_S="2", CXL_LOG_FORMAT="json"
        )
        with serving(env) as running:
            with running.writes() as client:
                assert post(client, [_promise("c-outage")]).status_code == 202
            broker.stop()
            with running.writes() as client:
                answer = post(client, [_promise("c-outage")])
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) >= 1
            with ThreadPoolExecutor(16) as pool:  # a crowd of publishers waiting on the outage
                statuses = list(
                    pool.map(
                        lambda _: post(running.writes(), [_promise("c-o")]).status_code, range(32)
                    )
                )
            assert set(statuses) == {503}
            with running.client(timeout=5) as client:
                assert client.get("/healthz").status_code == 200
                deadline = time.monotonic() + 30
                while (ready := client.get("/readyz")).status_code == 200:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert ready.json()["broker"]["ok"] is False
            code = stop(running)
    assert code == 0, "".join(running.log)
    logged = [json.loads(line) for line in running.log if line.startswith("{")]
    posts = [e for e in logged if e.get("route") == "/v1/events"]
    assert [e["status"] for e in posts] == [202] + [503] * 33
    assert all(e["key_id"] == running.write_key.split("_")[1] for e in posts)
    assert any(e["level"] == "error" and "ingest" in e["message"] for e in logged)


def test_a_port_in_use_or_a_second_server_on_one_home_is_one_line(
    served: Served, tmp_path: Path
) -> None:
    port = served.url.rsplit(":", 1)[1]
    elsewhere = {**served.env, "CXL_HOME": str(tmp_path / "other")}
    taken = run_cxl(["serve", "--port", port], elsewhere, timeout=60)
    assert taken.returncode == 2, taken.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
    second = run_cxl(["serve", "--port", "0"], served.env, timeout=60)
    assert second.returncode != 0
    assert "another cxl serve runs" in second.stderr and served.url in second.stderr


def test_a_customer_id_with_a_slash_has_a_history(served: Served) -> None:
    event = _promise("team/a-1")
    with served.writes() as client:
        assert post(client, [event]).status_code == 202
    served.wait_sealed([event["event_id"]])
    with served.reads() as client:
        history = client.get("/v1/customers/team%2Fa-1/history")
    assert history.status_code == 200, history.text
    assert [row["event_id"] for row in history.json()] == [event["event_id"]]


def test_a_history_is_paged_by_seq_with_a_link_to_the_next_page(served: Served) -> None:
    """Each page is read from the stream's key after ``after_seq``; the ``Link`` header names the
    next page while there is one, and the pages hold every event once, in order."""
    customer = f"paged-{uuid.uuid4().hex[:8]}"
    events = [_promise(customer, promise_id=f"p{i}") for i in range(7)]
    with served.writes() as client:
        assert post(client, events).status_code == 202
    served.wait_sealed([e["event_id"] for e in events])

    def paged(limit: int) -> tuple[list[str], int]:
        seen: list[str] = []
        pages = 0
        url: str | None = f"/v1/customers/{customer}/history?limit={limit}"
        while url is not None:
            page = client.get(url)
            assert page.status_code == 200, page.text
            seen += [row["event_id"] for row in page.json()]
            pages += 1
            link = page.headers.get("Link")
            url = None if link is None else link.split(">")[0].lstrip("<")
        return seen, pages

    with served.reads() as client:
        by_three, by_seven = paged(3), paged(7)  # the last page part full, then exactly full
        beyond = client.get(f"/v1/customers/{customer}/history", params={"after_seq": 7})
        missing = client.get(f"/v1/customers/{customer}-none/history")
    ids = [e["event_id"] for e in events]
    assert by_three == (ids, 3) and by_seven == (ids, 1)
    assert beyond.status_code == 200 and beyond.json() == []
    assert missing.status_code == 404


def test_a_request_cannot_write_lines_into_the_log(served: Served) -> None:
    with served.client() as client:
        client.get("/x%0A2026-01-01 00:00:00,000 ERROR FORGED%1b[31m")
    time.sleep(0.3)
    assert not any(line.startswith("2026-01-01") for line in served.log)
    assert any("%0A2026-01-01" in line for line in served.log)


def test_a_reader_signalling_a_starting_server_never_ends_it(tmp_path: Path) -> None:
    """`cxl gap` asks a running server for a fresh copy with SIGUSR1, as soon as the server's pid
    is in its lock file: even during start-up, that must not end the server."""
    import os
    import signal
    import subprocess
    import sys

    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek", partitions=1)
    env = cxl_env(settings, CXL_INGEST_WORKERS="1")
    settings.home.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = settings.home / "serve.lock"
    signalled = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            text = lock.read_text() if lock.exists() else ""
            if '"url":"http' in text:
                break
            if '"pid"' in text:
                os.kill(process.pid, signal.SIGUSR1)
                signalled += 1
            time.sleep(0.02)
        assert signalled > 0
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0


def test_losing_the_embedded_broker_stops_the_server_with_exit_5(tmp_path: Path) -> None:
    """Memory only: with its broker gone every topic is gone, and nothing would come back."""
    import subprocess

    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek", partitions=1)
    env = cxl_env(settings, CXL_INGEST_WORKERS="1", CXL_KAFKA_TIMEOUT_S="2")
    with serving(env) as running:
        children = subprocess.run(
            ["pgrep", "-P", str(running.process.pid)], capture_output=True, text=True
        ).stdout.split()
        brokers = [pid for pid in children if "tansu" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(brokers) == 1, children
        subprocess.run(["kill", "-KILL", brokers[0]], check=True)
        code = running.process.wait(60)
    assert code == 5, "".join(running.log)
    assert "error:" in running.log[-1]
