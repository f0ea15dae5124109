"""Schemathesis over the whole OpenAPI document of a real ``recloop serve``, every check on.

The server runs as its own process (``python -m recloop.cli serve``, an API key set, so 401s
are exercised too) and Schemathesis' CLI drives it over HTTP: every operation (the
Personalizer ones included), every phase (examples, coverage, fuzzing, stateful), every
check, a bounded number of examples per operation. It passes with no 5xx, no traceback in
the server's log, no schema error and no failed check (an answer the document does not
describe, invalid data accepted, valid data refused), but for refusals of schema-valid data
that ``RULES`` explains: the rules JSON Schema cannot state. The figures (requests, 5xx,
failed checks, the server's RSS: start, peak, every 10 s) are printed and, with
``RECLOOP_ARTIFACTS`` set, written there as ``schema_fuzz.json``.

``RECLOOP_FUZZ_EXAMPLES`` (default 100 per operation) and ``RECLOOP_FUZZ_SEED`` tune a run;
about three minutes on two busy cores with the defaults.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port

KEY = "fuzz-key"
EXAMPLES = int(os.environ.get("RECLOOP_FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("RECLOOP_FUZZ_SEED", "20261204"))
RUN_LIMIT_SECONDS = 600


def _rss_kib(pid: int) -> int:
    """Resident set size of one process, from /proc (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class RssSampler:
    """Peak RSS of the server process, and of it with its children (the pipeline), sampled
    every 0.2 s in a thread; the server's RSS every 10 s (``timeline``, MiB): a one-time
    step (a model loaded) and a steady growth (something kept per request) look alike in a
    peak, not in a timeline."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = _rss_kib(pid)
        self.peak = self.peak_tree = 0
        self.timeline: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.2):
            own = _rss_kib(self.pid)
            tree = own + sum(_rss_kib(c) for c in _children(self.pid))
            self.peak, self.peak_tree = max(self.peak, own), max(self.peak_tree, tree)
            if ticks % 50 == 0:
                self.timeline.append(round(own / 1024, 1))
            ticks += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RECLOOP_API_KEY": KEY}
    command = [sys.executable, "-m", "recloop.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--log-level", "warning"]
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _fuzz(url: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    report_dir.mkdir(parents=True)
    config = report_dir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        st,
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--header",
        f"X-API-Key: {KEY}",
        "--header",
        f"Ocp-Apim-Subscription-Key: {KEY}",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--report",
        "json,ndjson",
        "--report-dir",
        str(report_dir),
        "--no-color",
    ]
    return subprocess.run(  # in the report folder: st keeps a cache where it runs
        command,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_SECONDS,
        check=False,
        cwd=report_dir,
    )


CONFIG = """
# a bound that catches a hang, not a latency target (speed is measured in benchmarks/): the
# first item put loads the text embedder, which took 10.3 s on a loaded 2-core machine
[checks]
max_response_time = 30.0

# 413 (a body over max_body_bytes) and 410 (a reward after its window closed, as 404 for an
# unknown event) are answers to data, not failures to check it: the byte size of a body and
# the age of an event are nothing a schema can state
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "413", "429", "5xx"]
"""

RULES = {
    "relational: ids must name actions of the same request": (
        r"names unknown|is not an action|baselineAction of its own|must be unique|"
        r"duplicate action id|baselineAction is excluded|no action left|every action is excluded|"
        r"appears twice in one batch"
    ),
    "relational: endTime after startTime": r"endTime is before startTime",
    "event and user ids: no non-printable character (beyond the control ones a pattern can "
    "list); a slot's <eventId>/<slotId> within 256": (
        r"event_id must be 1-256 printable characters|user_id must be printable characters"
    ),
    "policy kinds: one of the registry's (the answer names them; 422, not a missing "
    "resource's 404)": r"unknown policy kind",
    "VW arguments: an allow-list of learning options": (
        r"VW arg|learning options|--cb_adf|cannot split"
    ),
    "durations as text: their range": (
        r"(exp_unit_seconds|checkpoint_every_seconds): Input should be (less|greater)"
    ),
    "a model file's binary format": r"not a Vowpal Wabbit model file|model-rejected",
    "catalogue state: a field keeps the kind its first items gave it": (
        r"field '.*' is (numeric|categorical|tags|text|timestamp|id) \(|"
        r"items have \d+ fields; at most"
    ),
    "server setting: no agents_dir": r"agents by path over HTTP is off",
    "state: a loop evaluates at most 32 candidate policies": (
        r"evaluates at most \d+ candidate policies"
    ),
    "clock: an event's timestamp at most stream.max_future_seconds ahead": (
        r"s in the future \(limit"
    ),
}
"""Why a schema-valid request may still be refused: rules JSON Schema cannot state (they
relate values of one request, or depend on state or on a binary format). Every refusal of
schema-valid data must match one of these, or the test fails."""
BOUND = 2**63
ROUNDING = "64-bit bound: Schemathesis' generator works in doubles near 2**63"


def _rounded_past_the_bound(interaction: dict[str, Any]) -> bool:
    """Whether every integer of the request beyond 64 bits lies within 2**12 of +-2**63:
    Schemathesis generates near the bound in doubles (it sent -9223372036854776000 for
    -2**63, and 9223372036854775998 re-sent from an answer's 9.223372036854776e18)."""
    body = (interaction.get("request") or {}).get("body") or {}
    raw = base64.b64decode(body["$base64"]).decode(errors="replace") if "$base64" in body else ""
    beyond = [abs(int(n)) for n in re.findall(r"(?<![\w.])-?\d{19,}(?![\w.])", raw)]
    beyond = [n for n in beyond if n >= BOUND]
    return bool(beyond) and all(n - BOUND < 2**12 for n in beyond)


def _reason(interaction: dict[str, Any]) -> str:
    """What the server said about a refusal: a problem's detail or Personalizer's message,
    with recloop's kind of error."""
    content = (interaction.get("response") or {}).get("content") or {}
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else b""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300].decode(errors="replace")
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = (body["error"].get("innerError") or {}).get("code", "")
        return f"{inner}: {body['error'].get('message', '')}"
    if isinstance(body, dict):
        return f"{body.get('type', '')}: {body.get('detail', '')}"
    return str(body)[:300]


def _analyse(ndjson: Path) -> dict[str, Any]:
    """Requests, answers by status, and every failed check from the run's event stream;
    refusals of schema-valid data sorted by ``RULES``."""
    requests, statuses = 0, Counter[int]()
    failed, explained = Counter[str](), Counter[str]()
    unexplained: list[str] = []
    with ndjson.open() as events:
        for line in events:
            event = json.loads(line).get("ScenarioFinished")
            if event is None:
                continue
            recorder = event["recorder"]
            interactions = recorder.get("interactions") or {}
            for interaction in interactions.values():
                requests += 1
                if interaction.get("response") is not None:
                    statuses[int(interaction["response"]["status_code"])] += 1
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    if check["status"] != "failure":
                        continue
                    failed[check["name"]] += 1
                    interaction = interactions.get(case_id, {})
                    reason = _reason(interaction)
                    rule = next((r for r, p in RULES.items() if re.search(p, reason)), None)
                    if "integers must fit in 64 bits" in reason and _rounded_past_the_bound(
                        interaction
                    ):
                        rule = ROUNDING
                    if check["name"] == "positive_data_acceptance" and rule is not None:
                        explained[rule] += 1
                        continue
                    status = (interaction.get("response") or {}).get("status_code")
                    request = interaction.get("request") or {}
                    unexplained.append(
                        f"{check['name']}: {request.get('method')} {request.get('uri')} -> "
                        f"{status} {reason[:300]}"
                    )
    return {
        "requests": requests,
        "statuses": statuses,
        "failed": failed,
        "explained": explained,
        "unexplained": unexplained,
    }


def _figures(report_dir: Path) -> dict[str, Any]:
    report = json.loads(next(report_dir.glob("json-*.json")).read_text())
    seen = _analyse(next(report_dir.glob("ndjson-*.ndjson")))
    return {
        "operations": report["operations"]["tested"],
        "test_cases": report["test_cases"]["generated"],
        "requests": seen["requests"],
        "server_errors": sum(n for s, n in seen["statuses"].items() if s >= 500),
        "statuses": {str(s): n for s, n in sorted(seen["statuses"].items())},
        "failed_checks": dict(seen["failed"]),
        "schema_valid_refused_by_rule": dict(seen["explained"]),
        "violations": len(seen["unexplained"]),
        "unexplained": seen["unexplained"][:50],
        "failures": {f"{f['code']} {f['title']}": f["count"] for f in report["failures"]},
        "schema_errors": sum(e.get("count", 1) for e in report["errors"] or []),
        "seconds": round(report["running_time"], 1),
    }


@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_SECONDS + 120)
def test_schemathesis_finds_nothing_over_the_whole_api(tmp_path: Path) -> None:
    pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
    if not Path("/proc/self/status").exists():
        pytest.skip("the RSS figures read /proc")
    port, log = free_port(), tmp_path / "server.log"
    server = _serve(tmp_path / "data", port, log)
    sampler = RssSampler(server.pid)
    try:
        run = _fuzz(f"http://127.0.0.1:{port}", tmp_path / "report")
    finally:
        sampler.stop()
        _stop(server)
    figures = _figures(tmp_path / "report")
    server_log = log.read_text(errors="replace")
    figures.update(
        examples_per_operation=EXAMPLES,
        seed=SEED,
        server_rss_start_mib=round(sampler.start / 1024, 1),
        server_rss_peak_mib=round(sampler.peak / 1024, 1),
        server_and_pipeline_rss_peak_mib=round(sampler.peak_tree / 1024, 1),
        server_rss_every_10s_mib=sampler.timeline,
        server_tracebacks=server_log.count("Traceback"),
    )
    print(json.dumps({k: v for k, v in figures.items() if k != "unexplained"}, indent=1))
    artifacts = os.environ.get("RECLOOP_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / "schema_fuzz.json").write_text(json.dumps(figures, indent=1))
        (Path(artifacts) / "schema_fuzz.txt").write_text(run.stdout[-500_000:])
    summary = run.stdout[run.stdout.rfind("SUMMARY") :] or run.stdout[-5000:]
    assert figures["requests"] > 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert figures["server_errors"] == 0, summary
    assert figures["server_tracebacks"] == 0, server_log[-5000:]
    assert figures["schema_errors"] == 0, summary
    assert figures["violations"] == 0, "\n".join(figures["unexplained"])
