"""``RECLOOP_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns a skipped service test into a
failure: run on a small suite with the project's own ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.mark.services
def test_marked():
    pytest.skip("the database is away")

def test_by_reason():
    pytest.skip("PostgreSQL not reachable at postgresql://127.0.0.1:5432/test")

@pytest.fixture
def nats():
    pytest.skip("NATS JetStream not reachable at nats://127.0.0.1:4222")

def test_in_a_fixture(nats):
    pass

def test_other_skip():
    pytest.skip("PyTorch is not installed")
"""


@pytest.mark.parametrize("required", [True, False])
def test_service_skips_fail_only_when_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    services: needs the services\n")
    pytester.makepyfile(test_suite=SUITE)
    if required:
        monkeypatch.setenv("RECLOOP_REQUIRE_SERVICES", "1")
    else:
        monkeypatch.delenv("RECLOOP_REQUIRE_SERVICES", raising=False)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    if required:  # the fixture's skip is an error of its setup
        result.assert_outcomes(failed=2, errors=1, skipped=1)
    else:
        result.assert_outcomes(skipped=4)
