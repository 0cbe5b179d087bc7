"""A whole local pipeline in one process: simulated sensors + the causal service, on random ports.

Used by ``radarstream demo``, by ``radarstream bench-gui`` (in a child process, so that the feed
and the service do not share the GUI's interpreter) and by the GUI tests. No Qt here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from streamer.sim.simulator import RadarConfig


@dataclass(frozen=True)
class PipelineConfig:
    sensors: int = 4
    rate_hz: float = 20.0
    samples_per_message: int = 1
    seed: int = 0
    weights: Path | None = None
    """Causal weights for the service (None: the shipped ones)."""
    backend: str = "onnx"
    radar: RadarConfig = field(default_factory=RadarConfig)
    stats_interval_s: float = 1.0
    checkpoint_every: int | None = None
    """Publish ``state/<sensor>`` every N samples (the GUI then shows the service's exact h, c)."""
    rescore_window: int | None = 512
    """Re-score windows of this many samples with the bidirectional model (None: off; also off
    when this build's service has no re-scoring or the weights have no bidirectional model)."""
    rescore_hop: int | None = None
    """Samples between re-scored windows (default half a window)."""
    host: str = "127.0.0.1"
    alert_dmin_m: float | None = None
    """Near-miss alerts (``serve --alert-dmin-m``): the service publishes ``near_miss`` when a
    target is likely to pass closer than this (metres); None: off."""


def rescore_options(weights: Path | None, window: int | None, hop: int | None = None) -> tuple[dict, dict]:
    """ServiceConfig/StreamService arguments that turn re-scoring on, when this build's service has
    it (``ServiceConfig.rescore``) and the weights hold a bidirectional model; else ``({}, {})``."""
    import dataclasses
    import inspect

    from models.bundle import shipped_weights_dir
    from streamer.live.service import ServiceConfig, StreamService

    base = Path(weights) if weights is not None else shipped_weights_dir()
    if window is None or not (base / "bidir.safetensors").is_file():
        return {}, {}
    if "rescore" not in {f.name for f in dataclasses.fields(ServiceConfig)}:
        return {}, {}
    try:
        from streamer.live.rescore import RescoreConfig
    except ImportError:
        return {}, {}
    extra = {"rescore": RescoreConfig(window=window, hop=hop or max(1, window // 2))}
    kwargs = {"weights_dir": str(base)} if "weights_dir" in inspect.signature(StreamService).parameters else {}
    return extra, kwargs


class LocalPipeline:
    """SimulatedFeed publishing in a thread + StreamService in a thread, both bound to ``:*``.

    ``start()`` returns ``(feed_endpoint, service_endpoint)``; two pipelines never collide.
    """

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.ctx = zmq.Context()
        self.feed_endpoint: str | None = None
        self.service_endpoint: str | None = None
        self.service = None
        self.feed = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: zmq.Socket | None = None
        self.sent = 0
        self.rescoring = False
        self._muted: set[bytes] = set()  # topics not sent (an outage: those samples are lost)

    def start(self) -> tuple[str, str]:
        from streamer.live.backends import make_backend
        from streamer.sim.publisher import FeedConfig, SimulatedFeed
        from streamer.live.service import ServiceConfig, StreamService

        cfg = self.config
        sock = self.ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(f"tcp://{cfg.host}:*")
        self._sock = sock
        self.feed_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        backend = make_backend(cfg.backend, cfg.weights, threads=1)
        extra, kwargs = self._rescore_options()
        if cfg.alert_dmin_m is not None:
            from streamer.live.alerts import AlertConfig

            extra["alert"] = AlertConfig(dmin_m=float(cfg.alert_dmin_m))
        scfg = ServiceConfig(feeds=(self.feed_endpoint,), pub=f"tcp://{cfg.host}:*",
                             stats_interval_s=cfg.stats_interval_s, checkpoint_every=cfg.checkpoint_every, **extra)
        self.service = StreamService(scfg, backend, context=self.ctx, **kwargs)
        self._threads.append(self.service.start_thread())
        self.service_endpoint = self.service.pub_endpoint
        self.feed = SimulatedFeed(FeedConfig(sensors=cfg.sensors, rate_hz=cfg.rate_hz,
                                             samples_per_message=cfg.samples_per_message, seed=cfg.seed,
                                             realtime=True, radar=cfg.radar))

        def run_feed() -> None:
            self.sent = self._publish(sock)

        th = threading.Thread(target=run_feed, name="radarstream-demo-feed", daemon=True)
        th.start()
        self._threads.append(th)
        return self.feed_endpoint, self.service_endpoint

    def _publish(self, sock: zmq.Socket, warmup_s: float = 0.3) -> int:
        """``streamer.sim.publisher.publish`` (real time, absolute deadlines), skipping muted sensors."""
        import time

        feed = self.feed
        if warmup_s:
            time.sleep(warmup_s)
        interval = feed.period_ns * feed.config.samples_per_message / 1e9
        start = time.perf_counter()
        sent = n = 0
        while not self._stop.is_set():
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            muted = self._muted
            for frames in feed.next_messages():
                if frames[0] not in muted:
                    sock.send_multipart(frames, copy=False)
                    sent += 1
            n += 1
        return sent

    def mute(self, sensor: str, muted: bool = True) -> None:
        """Stop (or resume) sending ``sensor``'s samples: an outage; the samples of the muted time
        are lost, so the stream resumes with a sequence gap, as from a feed that died and came back."""
        from streamer.wire import protocol as P

        topic = P.topic(P.Kind.SAMPLES, sensor)
        self._muted = (self._muted | {topic}) if muted else (self._muted - {topic})

    def _rescore_options(self) -> tuple[dict, dict]:
        extra, kwargs = rescore_options(self.config.weights, self.config.rescore_window, self.config.rescore_hop)
        self.rescoring = bool(extra)
        return extra, kwargs

    def stop_feed(self) -> int:
        """Stop publishing (the service keeps running); returns the samples sent per sensor."""
        self._stop.set()
        if len(self._threads) > 1:
            self._threads[1].join(5)
        return self.feed.seq if self.feed is not None else 0

    def stop(self) -> None:
        self._stop.set()
        if self.service is not None:
            self.service.stop()
        for th in self._threads:
            th.join(5)
        self._threads = []
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self.ctx.term()

    def __enter__(self) -> "LocalPipeline":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalService:
    """The causal service alone, on a random port, fed by an existing endpoint (a replay)."""

    def __init__(self, feed: str, weights: Path | None, *, backend: str = "onnx", host: str = "127.0.0.1",
                 rescore_window: int | None = 512):
        from streamer.live.backends import make_backend
        from streamer.live.service import ServiceConfig, StreamService

        self.ctx = zmq.Context()
        extra, kwargs = rescore_options(weights, rescore_window)
        self.service = StreamService(ServiceConfig(feeds=(feed,), pub=f"tcp://{host}:*", **extra),
                                     make_backend(backend, weights, threads=1), context=self.ctx, **kwargs)
        self._thread = self.service.start_thread()
        self.endpoint: str = self.service.pub_endpoint

    def stop(self) -> None:
        self.service.stop()
        self._thread.join(5)
        self.ctx.term()


def serve_in_subprocess(conn, config: PipelineConfig) -> None:
    """Child-process entry (multiprocessing, spawn): run a pipeline, send its endpoints on
    ``conn``, stop when anything arrives on ``conn``; replies with the samples published."""
    import torch

    torch.set_num_threads(1)
    pipe = LocalPipeline(config)
    try:
        conn.send(pipe.start())
        conn.recv()
        conn.send({"samples_per_sensor": pipe.stop_feed(), "sensors": config.sensors})
    except (EOFError, KeyboardInterrupt, BrokenPipeError, OSError):
        pass
    finally:
        pipe.stop()
