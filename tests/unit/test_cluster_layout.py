"""The Procfile and the settings of the scaled-out layout (``make run-cluster``) agree with
what recloop accepts: every process reads a valid settings file, and the launcher the
tests use reads the same processes as honcho."""

from __future__ import annotations

from recloop.settings import load_settings


def test_the_procfile_starts_two_servers_and_one_stream_runner_on_one_settings_file() -> None:
    from benchmarks.cluster import CONFIG, PROCFILE, read_procfile

    commands = read_procfile(PROCFILE)
    assert list(commands) == ["web1", "web2", "stream"]
    assert all(c.startswith("recloop ") and f"--config {CONFIG.relative_to(PROCFILE.parent)}" in c
               for c in commands.values())  # fmt: skip
    assert "${WEB1_PORT:-8001}" in commands["web1"] and "${WEB2_PORT:-8002}" in commands["web2"]
    assert commands["stream"].startswith("recloop stream ")


def test_the_cluster_settings_put_everything_shared_in_the_services(monkeypatch) -> None:
    from benchmarks.cluster import CONFIG

    for name in ("RECLOOP_STORAGE_URL", "RECLOOP_PIPELINE", "RECLOOP_STREAM__RUNNER"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(CONFIG)
    assert settings.storage_url == "postgresql://127.0.0.1:5432/recloop_cluster"
    assert settings.pipeline == "process"  # each server's pipeline contends for the lease
    stream = settings.stream
    assert stream.runner == "external" and stream.log_url.startswith("nats://")
    assert stream.recommendations_url.startswith("redis://")
    monkeypatch.setenv("RECLOOP_STREAM__NATS_STREAM", "OTHER")  # env beats the file, per key
    other = load_settings(CONFIG).stream
    assert other.nats_stream == "OTHER" and other.recommendations_url == stream.recommendations_url
