"""VW arguments from requests, over real HTTP: what would make VW write files is refused
before anything is stored, and nothing is written (issue 20). The web API answers 422
problem+json; Personalizer's routes answer in Personalizer's shape, where invalid input is a
400 ``BadRequest`` (Personalizer has no 422) with recloop's kind as the inner code."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.unit.vw_forge import forge_model

API = "?api-version=2022-09-01-preview"
WRITES = "-f x.vw --readable_model x.txt --invert_hash y.txt"
"""Relative names: VW writes them in the server's working directory, ``cwd`` below."""
PERSONALIZER_DEFAULT = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
RANK = {
    "context": {"user": "ann"},
    "actions": [{"id": "a", "features": {"x": 1}}, {"id": "b", "features": {"y": 1}}],
}


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's working directory: an empty folder of its own."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def http(serve: Callable[..., Server], cwd: Path) -> Iterator[httpx.Client]:
    with serve(pipeline="thread", exp_unit_seconds=1.0) as client:
        yield client


def _written(tmp_path: Path) -> list[str]:
    """Files VW would have written: anywhere under the test's folder (cwd, data dir, out)."""
    gc.collect()  # a workspace that escaped would write its files when it is freed
    return sorted(str(p) for p in tmp_path.rglob("*") if p.name in ("x.vw", "x.txt", "y.txt"))


def _problem(resp: httpx.Response, says: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert says in resp.json()["detail"], resp.json()


def _personalizer_error(resp: httpx.Response, says: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "BadRequest" and says in error["message"], error
    assert error["innerError"]["code"] in ("invalid-input", "model-rejected"), error


def _data_db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "default" / "loop.db"


def _still_serves(http: httpx.Client, tmp_path: Path) -> None:
    """The event log is intact and the loop still decides and logs."""
    assert _data_db(tmp_path).read_bytes()[:16] == b"SQLite format 3\0"
    assert http.post("/v1/rank", json=RANK).status_code == 200


def test_a_candidate_policy_cannot_write_files(
    http: httpx.Client, tmp_path: Path, cwd: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for args, says in [
        (f"--cb_adf {WRITES}", "'-f' is not allowed"),
        (f"--cb_adf --readable_model {out}/x.txt --invert_hash {out}/y.txt", "'--readable_model'"),
        (f"--cb_adf --cb_type mtr -f {_data_db(tmp_path)}", "'-f' is not allowed"),
        ("--cb_adf --bogus", "'--bogus' is not allowed"),
        ("--cb_adf -b 40", "-b: '40' is not a whole number in [1, 24]"),
    ]:
        body = {"name": "w", "kind": "vw-cb", "params": {"args": args}}
        _problem(http.post("/v1/policies", json=body), says)
    assert _written(tmp_path) == [] and list(cwd.iterdir()) == []
    assert http.get("/v1/evaluations").json()["candidates"] == []  # nothing was registered
    _still_serves(http, tmp_path)
    ok = {"name": "w", "kind": "vw-cb", "params": {"args": "--cb_adf --cb_type ips -q CA"}}
    assert http.post("/v1/policies", json=ok).status_code == 201


def test_personalizers_policy_configuration_cannot_write_files(
    http: httpx.Client, tmp_path: Path, cwd: Path
) -> None:
    path = f"/personalizer/v1.0/configurations/policy{API}"
    before = http.get(path).json()
    for arguments, says in [
        (f"--cb_explore_adf --epsilon 0.2 {WRITES}", "'-f' is not allowed"),
        (f"--cb_adf -f {_data_db(tmp_path)}", "'-f' is not allowed"),
        ("--cb_explore_adf --bogus", "'--bogus' is not allowed"),
        ("--cb_adf --cb_type mtr --cb_type ips", "Vowpal Wabbit rejected"),
    ]:
        _personalizer_error(http.put(path, json={"name": "p", "arguments": arguments}), says)
        assert http.get(path).json() == before  # nothing was stored
    assert _written(tmp_path) == [] and list(cwd.iterdir()) == []
    _still_serves(http, tmp_path)
    # Personalizer's default learning policy is accepted (its exploration: recloop's explorer)
    updated = http.put(path, json={"name": "p", "arguments": PERSONALIZER_DEFAULT})
    assert updated.status_code == 200, updated.text
    assert http.get(path).json()["arguments"] == "--cb_adf --power_t 0 -l 0.001 --cb_type mtr -q ::"


def test_personalizers_evaluations_cannot_write_files(
    http: httpx.Client, tmp_path: Path, cwd: Path
) -> None:
    body: dict[str, Any] = {"name": "e", "startTime": "2026-01-01", "endTime": "2027-01-01"}
    for arguments, says in [
        (f"--cb_adf {WRITES}", "'-f' is not allowed"),
        ("--cb_explore_adf --epsilon 0.1 -p p.txt", "'-p' is not allowed"),
        ("--cb_adf --bogus", "'--bogus' is not allowed"),
    ]:
        policies = [{"name": "ok", "arguments": "--cb_adf"}, {"name": "x", "arguments": arguments}]
        put = http.put(
            f"/personalizer/v1.0/evaluations/e1{API}", json={**body, "policies": policies}
        )
        _personalizer_error(put, says)
        assert http.get(f"/personalizer/v1.0/evaluations/e1{API}").status_code == 404
    assert _written(tmp_path) == [] and list(cwd.iterdir()) == []
    _still_serves(http, tmp_path)


def test_an_imported_model_cannot_tell_vw_to_write_files(
    http: httpx.Client, tmp_path: Path, cwd: Path
) -> None:
    from recloop.policies.vw import VWLearner

    learner = VWLearner("--cb_adf --cb_type mtr -q CA")
    blob = learner.snapshot()
    learner.close()
    versions = http.get("/v1/models").json()["versions"]
    for forged, says in (
        (forge_model(blob, extra_options=f" --readable_model {cwd}/x.txt"), "'--readable_model'"),
        (forge_model(blob, model_id="x --invert_hash y.txt"), "the model's id"),
    ):
        put = http.put(f"/personalizer/v1.0/model{API}", content=forged)
        _personalizer_error(put, says)
    assert _written(tmp_path) == [] and list(cwd.iterdir()) == []
    assert http.get("/v1/models").json()["versions"] == versions  # nothing was stored
    put = http.put(f"/personalizer/v1.0/model{API}", content=blob)
    assert put.status_code == 204, put.text
