"""Prometheus metrics of the inference worker, under the names vLLM exports.

Using vLLM's names (`vllm:num_requests_waiting`, `vllm:e2e_request_latency_seconds`, ...) lets one
set of dashboards and autoscaling rules watch either our worker or a vLLM server put in its place.
`vllm:batch_size` and `vllm:request_rejected_total` are ours, named in the same style.
Each worker keeps its own registry, so several can live in one process (tests, in-process use).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


class WorkerMetrics:
    """The worker's counters, gauges and histograms, labelled with the served model's name."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        running = Gauge("vllm:num_requests_running", "Requests in the batch being generated.", labels, registry=r)
        waiting = Gauge("vllm:num_requests_waiting", "Requests queued for the next batch.", labels, registry=r)
        queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time from arrival to the start of its batch.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from arrival to the finished reply.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        prompt = Counter("vllm:prompt_tokens", "Prompt tokens processed.", labels, registry=r)
        generation = Counter("vllm:generation_tokens", "Tokens generated.", labels, registry=r)
        success = Counter(
            "vllm:request_success", "Finished requests by finish reason.", labels + ["finished_reason"], registry=r
        )
        rejected = Counter(
            "vllm:request_rejected", "Requests refused: overloaded or invalid.", labels + ["reason"], registry=r
        )
        batch = Histogram("vllm:batch_size", "Requests per generate call.", labels, buckets=BATCH_BUCKETS, registry=r)
        self.running = running.labels(model_name)
        self.waiting = waiting.labels(model_name)
        self.queue_time = queue.labels(model_name)
        self.e2e_latency = e2e.labels(model_name)
        self.time_to_first_token = ttft.labels(model_name)
        self.prompt_tokens = prompt.labels(model_name)
        self.generation_tokens = generation.labels(model_name)
        self.batch_size = batch.labels(model_name)
        self._success = success
        self._rejected = rejected
        self._model = model_name

    def finished(self, reason: str) -> None:
        self._success.labels(self._model, reason).inc()

    def rejected(self, reason: str) -> None:
        self._rejected.labels(self._model, reason).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of everything above."""
        return generate_latest(self.registry)
