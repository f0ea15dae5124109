"""Prometheus exposition built at scrape time from each loop's LoopStats (no globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recloop.core.stats import LoopStats

HELP = {
    "decisions_total": "Decisions logged",
    "rewards_total": "Rewards logged",
    "activations_total": "Deferred decisions activated",
    "joins_total": "Joined examples emitted at window end",
    "joins_default_reward_total": "Joined examples that got the default reward",
    "checkpoints_total": "Model versions written by the learner",
    "models_rejected_total": "Model versions rejected as corrupt or incompatible",
    "pipeline_errors_total": "Failed pipeline steps (retried)",
    "dead_letters_total": "Rewards/activations that could not be joined, by reason",
    "rejected_total": "Requests rejected, by reason",
    "store_errors_total": "Requests answered 503 because a store failed, by cause",
    "rate_limit_backend_up": "1 while the rate limits' Redis answers, 0 after a failure",
    "rate_limit_backend_errors_total": "Rate-limit Redis calls that failed, by cause",
    "rate_limit_degraded_total": "Requests rate-limited in-process (or not) as Redis was away",
    "rate_limit_evictions_total": "Busy in-memory rate-limit buckets dropped at the size bound",
    "learner_lag_examples": "Joined examples not yet learned",
    "learner_offset": "Last joined example learned",
    "learner_agent_learned": "Decisions the fusion learner learned from (with a weight)",
    "learner_agent_skipped_without_weight": "Decisions the fusion learner skipped: served "
    "by another policy, they carry no weight",
    "learner_agent_train_steps": "Minibatch steps of the fusion learner",
    "learner_agent_comparisons": "DBGD comparisons of W and W~ made by the DRN learner",
    "learner_agent_explore_wins": "DBGD comparisons the perturbed network won (W moved)",
    "learner_agent_major_updates": "DRN's major (replay) updates",
    "joiner_pending": "Decisions waiting for their window to close",
    "model_version": "Model version being served",
    "items_featurized_total": "Catalogue items whose features were computed (new content)",
    "items_unchanged_total": "Item writes skipped: the same content was already featurized",
    "item_store_lookups_total": "Catalogue items read from the store (not in memory yet)",
    "featurization_errors_total": "Featurization failures the decision went on without",
    "catalogue_items": "Live items in the loop's catalogue",
    "default_reward_rate": "Share of joined examples that got the default reward",
    "stream_events_in_total": "Behaviour events durably logged",
    "stream_duplicates_total": "Behaviour events refused as already logged (same event_id)",
    "stream_rejected_total": "Behaviour events or batches refused, by reason",
    "stream_state_updates_total": "User state changes applied by the stream runner",
    "stream_triggers_total": "State changes that triggered a new recommendation list",
    "stream_recommendation_writes_total": "Recommendation lists written to the store",
    "stream_dead_letters_total": "Behaviour events dead-lettered by the runner, by reason",
    "stream_expired_users_total": "Users forgotten after the state TTL",
    "stream_served_total": "Recommendation lookups, by source (state or popular)",
    "stream_runner_offset": "Last behaviour event processed by the runner",
    "stream_users": "Users with state in the runner",
    "stream_lag_seconds_p50": "End-to-end lag, event time to recommendation written (p50)",
    "stream_lag_seconds_p99": "End-to-end lag, event time to recommendation written (p99)",
}


class LoopCollector(Collector):
    """Collects `recloop_*` metrics, labelled by loop."""

    def __init__(
        self,
        source: Callable[[], dict[str, LoopStats]],
        http: LoopStats,
        *server_wide: Callable[[], LoopStats | None],
    ) -> None:
        self._source = source
        self._http = http
        self._server_wide = server_wide

    def collect(self) -> Iterator[Metric]:
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        wide = [("", s) for s in (f() for f in self._server_wide) if s is not None]
        for loop_name, stats in [*self._source().items(), ("", self._http), *wide]:
            for key, value in stats.counters().items():
                base, _, reason = key.partition(":")
                labels = ["loop", "reason"] if reason else ["loop"]
                fam = counters.setdefault(
                    f"{base}{reason and ':'}",
                    CounterMetricFamily(
                        f"recloop_{base.removesuffix('_total')}",
                        HELP.get(base, base),
                        labels=labels,
                    ),
                )
                fam.add_metric([loop_name, reason] if reason else [loop_name], value)
            for key, value in stats.gauges().items():
                fam_g = gauges.setdefault(
                    key, GaugeMetricFamily(f"recloop_{key}", HELP.get(key, key), labels=["loop"])
                )
                fam_g.add_metric([loop_name], value)
        yield from counters.values()
        yield from gauges.values()
