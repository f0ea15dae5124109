"""Every CLI user error is one line on stderr and exit status 2, never a traceback: run as
the installed ``recloop`` command (the entry point is what handles them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port

RECLOOP = str(Path(sys.executable).parent / "recloop")


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    return subprocess.run(
        [RECLOOP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**clean, "COLUMNS": "200", **env},
    )


@pytest.mark.parametrize(
    ("case", "args", "env", "says"),
    [
        # was 254 lines of traceback
        ("no server", ["simulate", "--events", "5", "--url", "URL"], {}, "cannot reach http"),
        ("settings typo", ["show-config", "--config", "typo.toml"], {}, "did you mean 'epsilon'"),
        ("bad env value", ["show-config"], {"RECLOOP_EPSILON": "lots"}, "invalid settings: eps"),
        ("unknown loop", ["items", "get", "x", "--loop", "nope"], {}, "no loop named 'nope'"),
        # was silently ignored (the default epsilon served)
        ("misspelt env", ["show-config"], {"RECLOOP_EPSILN": "0.3"}, "mean RECLOOP_EPSILON?"),
    ],
)
def test_a_user_error_is_one_line_and_exit_2(
    tmp_path: Path, case: str, args: list[str], env: dict[str, str], says: str
) -> None:
    (tmp_path / "typo.toml").write_text("epsilonn = 0.3\n")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = _run([url if a == "URL" else a for a in args], tmp_path, **env)
    assert result.returncode == 2, (case, result.stderr[-2000:])
    assert result.stderr.startswith("recloop: ") and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_tools_own_variables_and_nested_settings_are_not_refused() -> None:
    from recloop.core.errors import InvalidInputError
    from recloop.settings import check_environment

    check_environment(
        {
            "RECLOOP_CONFIG": "x.toml",
            "RECLOOP_TEST_POSTGRES_URL": "postgresql://",
            "RECLOOP_REQUIRE_SERVICES": "1",
            "RECLOOP_STREAM__LOG_URL": "nats://",
            "recloop_epsilon": "0.1",
            "PATH": "/bin",
        }
    )
    with pytest.raises(InvalidInputError, match="RECLOOP_STREAMS__LOG_URL"):
        check_environment({"RECLOOP_STREAMS__LOG_URL": "nats://"})
