"""kit bench against real HTTP servers this test starts on 127.0.0.1 (stdlib http.server, threaded).

Nothing is faked below the socket: the servers speak kit's /generate + /health contract and the
OpenAI streaming protocol, and kit bench talks to them over loopback TCP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from kit import bench
from kit.cli import app
from kit.history import History

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}, "required": ["name", "count"]}
GOOD = '{"name": "ship", "count": 3}'
CONTROL = '{"name": "line one\nline two\tend", "count": 3}'  # raw newline and tab inside a string
WRONG_SCHEMA = '{"name": "ship"}'


def make_handler(texts: Callable[[int], str], *, delay: float = 0.0, status: int = 200) -> type[BaseHTTPRequestHandler]:
    counter = {"n": 0, "in_flight": 0, "max_in_flight": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        stats = counter

        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

        def _json(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._json(200, {"data": [{"id": "test/model"}]})
            else:
                self._json(404, {"error": "no such path"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with lock:
                i = counter["n"]
                counter["n"] += 1
                counter["in_flight"] += 1
                counter["max_in_flight"] = max(counter["max_in_flight"], counter["in_flight"])
            try:
                time.sleep(delay)
                if status != 200:
                    self._json(status, {"error": "engine exploded"})
                elif self.path == "/generate":
                    assert set(body) <= {"prompt", "max_tokens", "schema", "temperature"}
                    self._json(200, {"text": texts(i), "usage": {"prompt_tokens": 10, "completion_tokens": 12}})
                elif self.path == "/v1/chat/completions":
                    self._stream(body, texts(i))
                else:
                    self._json(404, {"error": "no such path"})
            finally:
                with lock:
                    counter["in_flight"] -= 1

        def _stream(self, body: dict, text: str) -> None:
            assert body["stream"] is True and body["model"] == "test/model"
            assert body["response_format"]["json_schema"]["schema"] == SCHEMA
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 7}}
            self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    return Handler


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_kit_contract_sweep_counts_everything():
    handler = make_handler(lambda i: GOOD, delay=0.02)
    with serve(handler) as url:
        report = bench.run(bench.Endpoint(url), bench.Workload(schema=SCHEMA), concurrency=(1, 4), requests=8, price_per_hour=3.6)
    assert [lv.concurrency for lv in report.levels] == [1, 4]
    for lv in report.levels:
        assert (lv.requests, lv.ok, lv.errors) == (8, 8, 0)
        assert lv.strict_json == lv.schema_valid == 8 and lv.strict_json_share == lv.schema_valid_share == 1.0
        assert lv.control_chars_in_strings == lv.invalid_json == 0
        assert lv.output_tokens == 96 and lv.output_tokens_per_s == pytest.approx(96 / lv.wall_s, rel=0.01)
        assert lv.latency_p50_s >= 0.02 and lv.latency_p95_s >= lv.latency_p50_s
        assert lv.ttfb_p50_s is None  # not streamed: no time to first byte to report
        # $3.60/h = $0.001/s; 1,000 requests at r req/s keep the GPU busy 1000/r seconds
        assert lv.cost_per_1k_requests_usd == pytest.approx(1000 / lv.requests_per_s * 0.001, rel=0.01)
    assert handler.stats["max_in_flight"] == 4  # the level really had 4 requests in flight
    assert handler.stats["n"] == 8 + 8 + 1  # and the warm-up was one more


def test_raw_control_characters_are_reported_not_hidden():
    handler = make_handler(lambda i: CONTROL if i % 2 else GOOD)
    with serve(handler) as url:
        report = bench.run(bench.Endpoint(url), bench.Workload(schema=SCHEMA), concurrency=(2,), requests=10, warmup=False)
    (lv,) = report.levels
    assert lv.ok == 10
    assert lv.control_chars_in_strings == 5 and lv.strict_json == 5 and lv.invalid_json == 0
    assert lv.schema_valid == 5  # a lenient parser would have said 10
    assert any("raw control character" in p for p in lv.json_problem_examples)
    text = bench.format_text(report)
    assert "5 of 10 outputs hold raw control characters inside strings" in text


def test_schema_failures_and_broken_json_are_told_apart():
    outputs = [GOOD, WRONG_SCHEMA, '{"name": "cut off', "```json\n" + GOOD + "\n```"]
    with serve(make_handler(lambda i: outputs[i % 4])) as url:
        report = bench.run(bench.Endpoint(url), bench.Workload(schema=SCHEMA), concurrency=(1,), requests=8, warmup=False)
    (lv,) = report.levels
    assert (lv.strict_json, lv.schema_valid, lv.invalid_json, lv.control_chars_in_strings) == (4, 2, 4, 0)


def test_openai_streaming_measures_time_to_first_byte():
    handler = make_handler(lambda i: GOOD, delay=0.01)
    with serve(handler) as url:
        report = bench.run(bench.Endpoint(url, protocol="openai"), bench.Workload(schema=SCHEMA), concurrency=(1, 3), requests=6)
    assert report.model == "test/model"  # taken from GET /v1/models
    for lv in report.levels:
        assert lv.ok == 6 and lv.strict_json == lv.schema_valid == 6
        assert lv.output_tokens == 42  # from the streamed usage chunk
        assert lv.ttfb_p50_s is not None and lv.ttfb_p50_s <= lv.latency_p50_s
    assert handler.stats["max_in_flight"] == 3


def test_openai_stream_carries_control_characters_as_escapes_and_they_still_count():
    with serve(make_handler(lambda i: CONTROL)) as url:
        report = bench.run(bench.Endpoint(url, protocol="openai"), bench.Workload(schema=SCHEMA), concurrency=(1,), requests=3, warmup=False)
    assert report.levels[0].control_chars_in_strings == 3 and report.levels[0].strict_json == 0


def test_server_errors_are_counted_and_the_cli_exits_1():
    runner = CliRunner()
    with serve(make_handler(lambda i: GOOD, status=500)) as url:
        result = runner.invoke(app, ["bench", url, "--no-warmup", "-c", "2", "-n", "4", "--format", "json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["levels"][0]["errors"] == 4
    assert "HTTP 500" in data["levels"][0]["error_examples"][0]


def test_cli_text_and_json_with_profile_price(tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    runner = CliRunner()
    with serve(make_handler(lambda i: GOOD)) as url:
        text = runner.invoke(app, ["bench", url, "-c", "1,2", "-n", "2", "--schema", str(schema_file), "--gpu", "H200"])
        out = tmp_path / "report.json"
        js = runner.invoke(app, ["bench", url, "-c", "1", "-n", "2", "--schema", str(schema_file), "--gpu", "h200", "-f", "json", "-o", str(out)])
    assert text.exit_code == 0, text.output
    assert "strict JSON" in text.stdout and "H200 x1 at $4.54/h" in text.stdout
    assert js.exit_code == 0, js.output
    data = json.loads(js.stdout)
    assert data == json.loads(out.read_text())
    assert data["price_per_hour_usd"] == 4.54 and data["levels"][0]["schema_valid_share"] == 1.0


def test_unreachable_target_is_an_operation_error():
    runner = CliRunner()
    with serve(make_handler(lambda i: GOOD)) as url:
        pass  # the server is gone: nothing listens on that port now
    result = runner.invoke(app, ["bench", url, "--warmup-timeout", "5"])
    assert result.exit_code == 1
    assert "GET " in result.output and "/health" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["ftp://x"], "not an http(s) URL"),
        (["http://127.0.0.1:9", "-c", "1,x"], "not a list of numbers"),
        (["http://127.0.0.1:9", "-c", "0"], "concurrency level must be"),
        (["http://127.0.0.1:9", "--gpu", "Z80"], "no GPU 'Z80'"),
    ],
)
def test_bad_arguments_exit_2(args, message):
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 2 and message in result.output


def test_percentile_interpolates():
    assert bench.percentile([], 0.5) is None
    assert bench.percentile([3.0], 0.95) == 3.0
    assert bench.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert bench.percentile(list(map(float, range(1, 101))), 0.95) == pytest.approx(95.05)


def test_split_target():
    assert bench.split_target("https://a.modal.run") == ("https://a.modal.run", None, None)
    assert bench.split_target("ir-generator") == (None, "ir-generator", None)
    assert bench.split_target("ir-generator@r3") == (None, "ir-generator", 3)
    assert bench.split_target("ir-generator@3") == (None, "ir-generator", 3)


# --- a kit deployment as the target: the results are stored with its revision -------------------
# The revision is made by kit's real deploy flow into a temporary KIT_STATE_DIR; only the Modal cloud
# is replaced (tests/deployfakes.py), and its app server is a real HTTP server on 127.0.0.1.


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    from kit import deploy as kd
    from kit.load import load
    from tests.deployfakes import FakeModal, make_target, profile_tree

    fake = FakeModal(tmp_path / "modal")
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    state = tmp_path / "state"
    monkeypatch.setenv("KIT_STATE_DIR", str(state))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables in CliRunner: no folded cells
    profile = profile_tree(tmp_path / "repo")
    h = History.open(state)
    ctx = kd.Context(history=h, target=make_target(), deploy_timeout=30.0, modal_timeout=10.0, echo=lambda line: None)
    assert kd.deploy(kd.prepare(load(profile)), ctx, atomic=False).ok
    h.close()
    yield SimpleNamespace(fake=fake, state=state, profile=profile, url=fake.server.url)
    fake.close()


def stored(state) -> list:
    h = History.open(state, readonly=True)
    try:
        return h.bench_runs("ir-generator")
    finally:
        h.close()


def test_bench_a_revision_by_name_stores_the_run_with_it(deployment):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "ir-generator@r1", "-c", "1,2", "-n", "4", "-f", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["revision"] == "ir-generator@r1" and data["target"] == deployment.url
    assert {k: data["history"][k] for k in ("recorded", "app", "revision", "run")} == {"recorded": True, "app": "ir-generator", "revision": 1, "run": 1}
    (run,) = stored(deployment.state)
    assert (run.app, run.number, run.mode, run.target, run.gpu, run.price_per_hour_usd) == ("ir-generator", 1, "class", deployment.url, "A10G", 1.10)
    assert run.levels == data["levels"] and [lv["concurrency"] for lv in run.levels] == [1, 2]
    assert (run.requests, run.errors, run.strict_json_share) == (8, 0, 1.0)  # the profile's schema, from the revision
    assert run.latency_p50_s_c1 == data["levels"][0]["latency_p50_s"] > 0
    assert run.output_tokens_per_s_c1 == data["levels"][0]["output_tokens_per_s"]
    assert run.best_requests_per_s == max(lv["requests_per_s"] for lv in data["levels"])
    assert run.workload["max_tokens"] == 256 and run.kit_version == data["kit_version"] and run.created_by and run.at == data["started_at"]

    text = runner.invoke(app, ["bench", "ir-generator", "-c", "1", "-n", "2"])  # the current revision
    assert text.exit_code == 0, text.output
    assert "strict JSON" in text.stdout and "recorded in kit's history with ir-generator@r1 (bench run 2" in text.stdout
    assert len(stored(deployment.state)) == 2


def test_history_shows_each_revisions_latest_bench_and_lists_every_run(deployment):
    runner = CliRunner()
    for n in ("2", "3"):
        assert runner.invoke(app, ["bench", "ir-generator@r1", "-c", "1", "-n", n]).exit_code == 0
    res = runner.invoke(app, ["history", "ir-generator"])
    assert res.exit_code == 0, res.output
    assert "bench (latest)" in res.stdout and "req/s best; c1 p50" in res.stdout and "strict JSON 100%" in res.stdout
    doc = json.loads(runner.invoke(app, ["history", "ir-generator", "-f", "json"]).stdout)
    bench_summary = doc["revisions"][0]["bench"]
    assert bench_summary["id"] == 2 and bench_summary["requests"] == 3 and "levels" not in bench_summary
    assert bench_summary["latency_p50_s_c1"] > 0 and bench_summary["strict_json_share"] == 1.0
    res = runner.invoke(app, ["history", "--bench"])
    assert res.exit_code == 0, res.output
    assert "ir-generator: kit bench runs" in res.stdout and res.stdout.count(" r1 ") == 2 and deployment.url in res.stdout
    runs = json.loads(runner.invoke(app, ["history", "ir-generator", "--bench", "-f", "json"]).stdout)["bench_runs"]
    assert [(r["id"], r["number"], r["requests"], len(r["levels"])) for r in runs] == [(1, 1, 2, 1), (2, 1, 3, 1)]


def test_failed_requests_are_stored_with_their_count(deployment):
    deployment.fake.behave(generate="error")
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "ir-generator@1", "--no-warmup", "-c", "1", "-n", "3", "-f", "json"])
    assert res.exit_code == 1, res.output  # requests failed
    assert json.loads(res.stdout)["history"]["recorded"] is True
    (run,) = stored(deployment.state)
    assert (run.requests, run.errors, run.latency_p50_s_c1, run.strict_json_share) == (3, 3, None, None)
    assert "HTTP 500" in run.levels[0]["error_examples"][0]
    assert "3/3 failed" in runner.invoke(app, ["history"]).stdout


def test_a_url_target_records_nothing_and_says_so(deployment):
    runner = CliRunner()
    text = runner.invoke(app, ["bench", deployment.url, "-c", "1", "-n", "2"])
    assert text.exit_code == 0, text.output
    assert f"not recorded: {deployment.url} is a URL, not a kit deployment" in text.stdout
    js = json.loads(runner.invoke(app, ["bench", deployment.url, "-c", "1", "-n", "2", "-f", "json"]).stdout)
    assert js["history"]["recorded"] is False and js["revision"] is None
    assert stored(deployment.state) == []


def test_a_read_only_history_keeps_the_figures_and_says_why_nothing_was_stored(deployment):
    from tests.deployfakes import kit

    state = deployment.state
    files = [state, *state.iterdir()]
    modes = {p: p.stat().st_mode for p in files}
    before = {p: p.read_bytes() for p in files if p.is_file()}
    try:
        for p in files:
            p.chmod(0o555 if p.is_dir() else 0o444)
        code, out, err = kit("bench", "ir-generator@r1", "-c", "1", "-n", "2", env={**deployment.fake.env(), "KIT_STATE_DIR": str(state)}, read_only_as_root=True)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert code == 2, (out, err)
    assert "strict JSON" in out and "2/2" in out  # the figures are printed all the same
    assert "NOT recorded in kit's history" in out and "is read-only" in err
    assert {p: p.read_bytes() for p in files if p.is_file()} == before
    assert stored(state) == []


def test_a_history_corrupted_during_the_sweep_is_left_alone(deployment, monkeypatch):
    garbage = b"\x00not a database any more" * 400
    db = deployment.state / "history.db"
    real_run = bench.run

    def run_then_corrupt(*args, **kwargs):
        report = real_run(*args, **kwargs)
        for side in ("-wal", "-shm"):
            db.with_name(db.name + side).unlink(missing_ok=True)
        db.write_bytes(garbage)
        return report

    monkeypatch.setattr(bench, "run", run_then_corrupt)
    res = CliRunner().invoke(app, ["bench", "ir-generator@r1", "-c", "1", "-n", "2"])
    assert res.exit_code == 2
    assert "strict JSON" in res.stdout and "NOT recorded in kit's history" in res.stdout
    assert "not a readable SQLite database" in res.stderr and "untouched" in res.stderr
    assert db.read_bytes() == garbage


def test_diff_prices_requests_at_the_latency_kit_bench_measured(deployment, monkeypatch):
    runner = CliRunner()
    js = json.loads(runner.invoke(app, ["bench", "ir-generator@r1", "-c", "1", "-n", "3", "-f", "json"]).stdout)
    p50 = js["levels"][0]["latency_p50_s"]
    old = deployment.profile
    new = old.with_name("l40s.toml")
    new.write_text(old.read_text().replace('type = "A10G"', 'type = "L40S"', 1))

    opened: list[bool] = []
    real_init = History.__init__

    def spy(self, path, *, readonly=False):
        opened.append(readonly)
        real_init(self, path, readonly=readonly)

    monkeypatch.setattr(History, "__init__", spy)
    assert runner.invoke(app, ["check", str(old)]).exit_code == 0
    assert opened == []  # kit check never opens the history
    res = runner.invoke(app, ["diff", str(old), str(new), "-f", "json", "--detailed-exitcode"])
    assert res.exit_code == 2, res.output
    assert opened == [True]  # kit diff reads it, read-only
    (d,) = json.loads(res.stdout)["profiles"]
    before, after = d["cost"]["before"], d["cost"]["after"]
    assert before["latency_source"] == "measured by kit bench on r1" and before["latency_s"] == p50
    assert before["latency_measured"]["revision"] == 1 and before["latency_measured"]["bench_run"] == 1
    assert before["per_1k_requests_usd"] == round(1.10 * p50 / 3600 * 1000, 4)
    # r1 ran on an A10G: its latency says nothing of an L40S, so that side stays assumed, and the diff says so.
    assert after["latency_source"] == "assumed: smoke.latency_budget_s" and after["latency_measured"] is None
    assert any("kit bench measured ir-generator on r1 (A10G x1" in n and "latency is assumed" in n for n in d["notes"])
    text = runner.invoke(app, ["diff", str(old), str(new)]).stdout
    assert f"{p50:g} s per request (measured by kit bench on r1) before" in text and "(assumed: smoke.latency_budget_s) after" in text
    given = json.loads(runner.invoke(app, ["diff", str(old), str(new), "-f", "json", "--latency", "2"]).stdout)["profiles"][0]
    assert given["cost"]["before"]["latency_source"] == given["cost"]["after"]["latency_source"] == "--latency"

    # A history kit cannot read: the cost is assumed, with a note; kit diff and kit check work on.
    (deployment.state / "history.db").write_bytes(b"garbage" * 1000)
    res = runner.invoke(app, ["diff", str(old), str(new), "-f", "json", "--detailed-exitcode"])
    assert res.exit_code == 2, res.output
    (d,) = json.loads(res.stdout)["profiles"]
    assert d["cost"]["before"]["latency_source"] == "assumed: smoke.latency_budget_s"
    assert any(n.startswith("latency assumed: kit's history could not be read") for n in d["notes"])
    assert runner.invoke(app, ["check", str(old)]).exit_code == 0
