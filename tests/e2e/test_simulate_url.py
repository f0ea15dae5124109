"""``recloop simulate --url`` against a real server says that it registers its candidate
policies there (it used to register three without a word)."""

from __future__ import annotations

from collections.abc import Callable

from typer.testing import CliRunner

from recloop.cli import app
from recloop.experiments.simulate import CANDIDATES
from tests.e2e.conftest import Server


def test_simulate_against_a_server_names_the_policies_it_registers(
    serve: Callable[..., Server],
) -> None:
    with serve(pipeline="thread", exp_unit_seconds=0.5, join_grace_seconds=0.0) as api:
        url = str(api.base_url).rstrip("/")
        result = CliRunner().invoke(
            app, ["simulate", "--events", "60", "--window", "30", "--url", url, "--rate", "0"],
            env={"COLUMNS": "300"},
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        names = [c["name"] for c in CANDIDATES]
        assert f"registering candidate policies on {url} (loop default): {', '.join(names)}" in (
            result.output
        )
        candidates = api.get("/v1/evaluations").json()["candidates"]
        assert {c["name"] for c in candidates} >= set(names), candidates
