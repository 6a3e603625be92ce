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

import pytest
from typer.testing import CliRunner

from kit import bench
from kit.cli import app

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
