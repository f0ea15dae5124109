"""Scoped API keys over real HTTP: rank and admin scopes route by route (``/v1`` and
Personalizer paths), keys made and revoked without a restart (HTTP and the CLI), stored
hashed, the audit log naming the key, the settings key, and what the ops routes reveal."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from typer.testing import CliRunner

from recloop.cli import app as cli
from recloop.serving.auth import REFRESH_SECONDS
from tests.e2e.conftest import Server
from tests.e2e.test_api import RANK, problem

P = "?api-version=2022-09-01-preview"
P_RANK = {"contextFeatures": [{"u": 1}], "actions": [{"id": "a", "features": [{"x": 1}]}]}
runner = CliRunner()


def _cli(data_dir: Path, *args: str) -> str:
    result = runner.invoke(cli, [*args, "--data-dir", str(data_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _add(data_dir: Path, name: str, scope: str) -> str:
    key = _cli(data_dir, "keys", "add", name, "--scope", scope).strip()
    assert key.startswith("rk_") and len(key) > 40
    return key


def _h(key: str, personalizer: bool = False) -> dict[str, str]:
    return {("Ocp-Apim-Subscription-Key" if personalizer else "X-API-Key"): key}


def _forbidden(r: httpx.Response) -> None:
    assert problem(r, 403)["type"].endswith("/forbidden")


def _metric(api: httpx.Client, key: str, name: str, **labels: str) -> float:
    text = api.get("/metrics", headers=_h(key)).text
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _until(what: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``what()`` held (fails past ``timeout``)."""
    t0 = time.monotonic()
    while not what():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_scopes_are_enforced_route_by_route(serve: Callable[..., Server], data_dir: Path) -> None:
    admin, rank, metrics = (_add(data_dir, n, n) for n in ("admin", "rank", "metrics"))
    with serve(pipeline="thread", data_dir=data_dir, exp_unit_seconds=5.0) as api:
        # rank scope: the decision and stream routes, /v1 and Personalizer
        event = api.post("/v1/rank", json=RANK, headers=_h(rank)).json()["event_id"]
        assert api.post(
            f"/v1/events/{event}/reward", json={"value": 1}, headers=_h(rank)
        ).is_success
        assert api.post("/v1/loops/default/rank", json=RANK, headers=_h(rank)).status_code == 200
        for path in ("/v1/events", "/v1/users/u1/recommendations"):  # stream off
            r = api.request("POST" if path == "/v1/events" else "GET", path, headers=_h(rank))
            assert r.status_code in (200, 400), r.text  # past the Guard: the route answered
        ranked = api.post(f"/personalizer/rank{P}", json=P_RANK, headers=_h(rank, True))
        assert ranked.status_code == 201, ranked.text
        eid = ranked.json()["eventId"]
        reward = api.post(
            f"/personalizer/v1.0/events/{eid}/reward", json={"value": 1}, headers=_h(rank, True)
        )
        assert reward.status_code == 204
        multi = api.post(
            f"/personalizer/multislot/rank{P}",
            json={**P_RANK, "slots": [{"id": "s1", "baselineAction": "a"}]},
            headers=_h(rank, True),
        )
        assert multi.status_code == 201, multi.text

        # ... and nothing else: 403 forbidden, in each API's error shape
        for method, path in [
            ("GET", "/v1/models"),
            ("POST", "/v1/models/latest/activate"),
            ("GET", "/v1/evaluations"),
            ("GET", "/v1/dead-letters"),
            ("PUT", "/v1/items/i1"),
            ("GET", "/v1/dashboard"),
            ("GET", "/v1/keys"),
            ("GET", "/v1/audit"),
            ("GET", "/metrics"),
        ]:
            _forbidden(api.request(method, path, json={"fields": {"t": 1}}, headers=_h(rank)))
        for method, path in [
            ("GET", f"/personalizer/configurations/service{P}"),
            ("DELETE", f"/personalizer/logs{P}"),
            ("GET", "/loops/default/personalizer/v1.0/evaluations"),
        ]:
            r = api.request(method, path, headers=_h(rank, True))
            assert r.status_code == 403 and r.json()["error"]["code"] == "Forbidden", r.text

        # no key, or a wrong one: 401 everywhere but the probes and the dashboard page
        problem(api.post("/v1/rank", json=RANK), 401)
        problem(api.get("/v1/models", headers=_h("rk_wrong")), 401)
        problem(api.get("/openapi.json"), 401)
        problem(api.get("/metrics"), 401)
        r = api.post(f"/personalizer/rank{P}", json=P_RANK, headers=_h(rank))  # wrong header
        assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
        assert api.get("/dashboard").status_code == 200
        assert api.get("/openapi.json", headers=_h(rank)).status_code == 200

        # the admin key may do all of it; metrics scope only /metrics
        assert api.get("/v1/models", headers=_h(admin)).status_code == 200
        assert api.post("/v1/rank", json=RANK, headers=_h(admin)).status_code == 200
        assert api.get(
            f"/personalizer/configurations/service{P}", headers=_h(admin, True)
        ).is_success
        assert api.get("/metrics", headers={"Authorization": f"Bearer {metrics}"}).is_success
        _forbidden(api.get("/v1/models", headers=_h(metrics)))
        assert _metric(api, admin, "recloop_rejected_total", reason="forbidden") >= 13
        assert _metric(api, admin, "recloop_rejected_total", reason="unauthorized") >= 4


def test_a_key_made_and_revoked_over_http_counts_without_a_restart(
    serve: Callable[..., Server], data_dir: Path
) -> None:
    admin = _add(data_dir, "ops", "admin")
    with serve(pipeline="thread", data_dir=data_dir) as api:
        made = api.post("/v1/keys", json={"name": "shop", "scope": "rank"}, headers=_h(admin))
        assert made.status_code == 201, made.text
        shop = made.json()["key"]
        assert api.post("/v1/rank", json=RANK, headers=_h(shop)).status_code == 200
        problem(
            api.post("/v1/keys", json={"name": "shop", "scope": "rank"}, headers=_h(admin)), 409
        )
        problem(api.post("/v1/keys", json={"name": "x", "scope": "root"}, headers=_h(admin)), 422)
        listed = api.get("/v1/keys", headers=_h(admin)).json()
        assert [(k["name"], k["scope"]) for k in listed] == [("ops", "admin"), ("shop", "rank")]
        assert all("key" not in k for k in listed)

        # revoked by another process (the CLI, on the same store): refused within a refresh
        _cli(data_dir, "keys", "revoke", "shop")
        took = _until(
            lambda: api.post("/v1/rank", json=RANK, headers=_h(shop)).status_code == 401, 3
        )
        assert took <= REFRESH_SECONDS + 0.5
        second = _add(data_dir, "shop", "rank")  # the name is free again: a new key
        _until(lambda: api.post("/v1/rank", json=RANK, headers=_h(second)).status_code == 200, 3)
        assert api.delete("/v1/keys/shop", headers=_h(admin)).status_code == 204
        problem(api.post("/v1/rank", json=RANK, headers=_h(second)), 401)  # at once, here
        problem(api.delete("/v1/keys/shop", headers=_h(admin)), 404)
        # the last key revoked: the server stays closed (it does not fall back to open)
        assert api.delete("/v1/keys/ops", headers=_h(admin)).status_code == 204
        problem(api.post("/v1/rank", json=RANK), 401)
    listing = _cli(data_dir, "keys", "list")
    assert "shop" in listing and "ops" in listing and "rk_" not in listing


def test_keys_are_stored_hashed(serve: Callable[..., Server], data_dir: Path) -> None:
    admin = _add(data_dir, "ops", "admin")
    with serve(pipeline="thread", data_dir=data_dir) as api:
        rank = api.post("/v1/keys", json={"name": "r", "scope": "rank"}, headers=_h(admin))
        raw = rank.json()["key"]
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for key in (admin, raw):
        assert key.encode() not in stored
    with sqlite3.connect(data_dir / "keys.db") as db:
        digests = {bytes(r[0]) for r in db.execute("SELECT digest FROM keys")}
    assert digests == {hashlib.sha256(k.encode()).digest() for k in (admin, raw)}


def test_the_audit_log_names_the_key(serve: Callable[..., Server], data_dir: Path) -> None:
    admin = _add(data_dir, "release-bot", "admin")
    rank = _add(data_dir, "shop", "rank")
    with serve(pipeline="thread", data_dir=data_dir, api_key="s3cret") as api:
        api.post("/v1/rank", json=RANK, headers=_h(rank)).raise_for_status()  # not audited
        api.get("/v1/models", headers=_h(admin)).raise_for_status()  # a read: not audited
        api.post("/v1/models/latest/activate", headers=_h(admin)).raise_for_status()
        put = api.put("/v1/loops/default/items/i1", json={"fields": {"t": 1}}, headers=_h(admin))
        assert put.is_success, put.text
        api.delete(f"/personalizer/logs{P}", headers=_h("s3cret", True)).raise_for_status()
        api.delete("/v1/keys/nobody", headers=_h("s3cret"))  # a failed try is recorded too
        _forbidden(api.post("/v1/models/latest/activate", headers=_h(rank)))  # refused: no
        entries = api.get("/v1/audit", headers=_h(admin)).json()
        got = [(e["key"], e["method"], e["path"], e["status"], e["loop"]) for e in entries]
        assert got == [
            ("settings", "DELETE", "/v1/keys/nobody", 404, None),
            ("settings", "DELETE", "/personalizer/logs", 204, "default"),
            ("release-bot", "PUT", "/v1/loops/default/items/i1", 200, "default"),
            ("release-bot", "POST", "/v1/models/latest/activate", 200, "default"),
        ]
        assert all(e["time"] > time.time() - 60 for e in entries)
        page = api.get(f"/v1/audit?limit=1&before={entries[1]['seq']}", headers=_h(admin))
        assert [e["path"] for e in page.json()] == ["/v1/loops/default/items/i1"]
    shown = _cli(data_dir, "audit", "--limit", "10")
    assert "release-bot" in shown and "/v1/models/latest/activate" in shown


def test_the_settings_key_still_works_alone(serve: Callable[..., Server]) -> None:
    with serve(pipeline="thread", api_key="s3cret") as api:
        assert api.get("/v1/models", headers=_h("s3cret")).status_code == 200
        assert api.get("/metrics", headers=_h("s3cret")).status_code == 200
        problem(api.get("/v1/models"), 401)
        problem(
            api.post("/v1/keys", json={"name": "settings", "scope": "rank"}, headers=_h("s3cret")),
            422,
        )


def test_health_reveals_details_to_admin_keys_only(
    serve: Callable[..., Server], data_dir: Path
) -> None:
    admin = _add(data_dir, "ops", "admin")
    rank = _add(data_dir, "shop", "rank")
    with serve(data_dir=data_dir) as api:  # the pipeline in a child process: it has a PID
        public = api.get("/healthz")
        assert public.status_code == 200 and public.json() == {"status": "ok"}
        assert api.get("/healthz", headers=_h(rank)).json() == {"status": "ok"}
        detailed: dict[str, Any] = api.get("/healthz", headers=_h(admin)).json()
        assert detailed["pipeline"]["pid"] > 0 and "default" in detailed["loops"]
        ready = _until(lambda: api.get("/readyz").status_code == 200, 20)
        assert ready >= 0 and api.get("/readyz").json() == {"status": "ready"}
        assert (
            "join_lag_records" in api.get("/readyz", headers=_h(admin)).json()["loops"]["default"]
        )


def test_open_without_any_key(serve: Callable[..., Server]) -> None:
    with serve(pipeline="thread") as api:
        assert api.get("/v1/models").status_code == 200
        assert api.get("/metrics").status_code == 200
        assert api.get("/healthz").json()["pipeline"]["mode"] == "thread"  # details: open
        made = api.post("/v1/keys", json={"name": "first", "scope": "admin"})
        assert made.status_code == 201  # the first key made closes the server
        problem(api.get("/v1/models"), 401)
        assert api.get("/v1/models", headers=_h(made.json()["key"])).status_code == 200
        audit = api.get("/v1/audit", headers=_h(made.json()["key"])).json()
        assert [(e["key"], e["path"]) for e in audit] == [("anonymous", "/v1/keys")]


def test_the_official_personalizer_client_with_a_rank_key(
    serve: Callable[..., Server], data_dir: Path
) -> None:
    rank = _add(data_dir, "shop", "rank")
    with serve(pipeline="thread", data_dir=data_dir, exp_unit_seconds=5.0) as api:
        endpoint = str(api.base_url).rstrip("/")
        client = PersonalizerClient(endpoint, AzureKeyCredential(rank), retry_total=0)
        answer = client.rank({**P_RANK, "eventId": "sdk-1"})
        assert answer["eventId"] == "sdk-1" and answer["rewardActionId"] == "a"
        assert client.reward("sdk-1", {"value": 1.0}) is None
        admin = PersonalizerAdministrationClient(endpoint, AzureKeyCredential(rank), retry_total=0)
        with pytest.raises(HttpResponseError) as refused:
            admin.get_service_configuration()
        assert refused.value.status_code == 403
        wrong = PersonalizerClient(endpoint, AzureKeyCredential("rk_nope"), retry_total=0)
        with pytest.raises(HttpResponseError) as unauthorized:
            wrong.rank(P_RANK)
        assert unauthorized.value.status_code == 401
