"""Prometheus metrics of the bot process, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("supportbot_turns_total", "User messages handled, by channel and outcome", ["channel", "outcome"])
TURN_SECONDS = Histogram(
    "supportbot_turn_seconds",
    "Time from a message arriving to its reply being ready",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
MODEL_SECONDS = Histogram(
    "supportbot_model_seconds",
    "Time the inference backend took for one reply",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
ASSESSMENTS = Counter("supportbot_crisis_assessments_total", "Crisis layer verdicts by level", ["level"])
SECOND_LOOKS = Counter(
    "supportbot_crisis_second_looks_total",
    "Slow crisis checks: checked, dropped (queue full), late (the reply went out before the verdict)",
    ["result"],
)
SECOND_LOOK_PENDING = Gauge("supportbot_crisis_second_look_pending", "Slow crisis checks running or waiting")
ESCALATIONS = Counter("supportbot_escalations_total", "Escalations opened, by level", ["level"])
ALERT_FAILURES = Counter("supportbot_operator_alert_failures_total", "Operator alerts that could not be delivered")
DB_ERRORS = Counter("supportbot_database_errors_total", "Turns that met a database error", ["stage"])
TURNS_IN_FLIGHT = Gauge("supportbot_turns_in_flight", "Turns being handled right now")
