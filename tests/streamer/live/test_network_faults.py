"""A lossy proxy, a stalled consumer, a killed publisher, late joiners and silent peers: every loss reported exactly (campaign cases 3-6)."""

from __future__ import annotations

import random
import signal
import threading
import time

import numpy as np
import zmq

from streamer.live.health import HealthConfig
from streamer.wire import protocol as P
from tests.faults import (
    MARGIN_S,
    Publisher,
    coverage_is_exact,
    free_port,
    killing,
    probe_until_live,
    serving,
    wave,
)

# ------------------------------------------------------------------ 3. a lossy proxy


def test_proxy_dropping_k_messages_gives_exactly_k_gaps_and_the_documented_state_policy(tiny_weights, offline, figures):
    sensors, per_message, n_msgs, k = 4, 5, 300, 20
    rng = random.Random(7)
    ids = [f"p{i}" for i in range(sensors)]
    # k drops: k-1 single messages (small gaps: state carried on) and one run of 25 messages
    # (125 samples > max_gap 100: state reset), never adjacent, never first or last
    drops: dict[str, set[int]] = {s: set() for s in ids}
    big_sensor, big_start = ids[0], 150
    drops[big_sensor].update(range(big_start, big_start + 25))
    expected: set[tuple[str, int, int, str]] = {(big_sensor, big_start * per_message, (big_start + 25) * per_message - 1, "reset")}
    while len(expected) < k:
        s, m = rng.choice(ids), rng.randrange(2, n_msgs - 2)
        if {m - 1, m, m + 1} & drops[s] or (s == big_sensor and big_start - 2 <= m <= big_start + 26):
            continue
        drops[s].add(m)
        expected.add((s, m * per_message, (m + 1) * per_message - 1, "continue"))
    drop_keys = {(s, m * per_message) for s in ids for m in drops[s]}

    ctx = zmq.Context()
    upstream = ctx.socket(zmq.PUB)  # the "simulator"
    upstream.setsockopt(zmq.SNDHWM, 0)
    up_port = upstream.bind_to_random_port("tcp://127.0.0.1")
    proxy_out_port = free_port()
    stop = threading.Event()
    dropped: list[tuple[str, int]] = []

    def proxy() -> None:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{up_port}")
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.bind(f"tcp://127.0.0.1:{proxy_out_port}")
        while not stop.is_set():
            if not sub.poll(20):
                continue
            frames = sub.recv_multipart()
            m = P.decode_message(frames)
            if isinstance(m, P.Message) and (m.sensor, m.block.seq) in drop_keys:
                dropped.append((m.sensor, m.block.seq))
                continue
            pub.send_multipart(frames)
        sub.close(0)
        pub.close(0)

    th = threading.Thread(target=proxy, daemon=True)
    th.start()
    try:
        with serving(tiny_weights, feeds=(f"tcp://127.0.0.1:{proxy_out_port}",)) as (service, _, col):
            probe_until_live(upstream, col)
            x = {s: wave(0, n_msgs * per_message, i) for i, s in enumerate(ids)}
            for m in range(n_msgs):
                for s in ids:
                    blk = P.make_block(P.Kind.SAMPLES, x[s][m * per_message : (m + 1) * per_message], epoch=9,
                                       seq=m * per_message, t0_ns=m, period_ns=1)
                    upstream.send_multipart(P.encode_message(P.Message(P.Kind.SAMPLES, s, blk)))
                if m % 50 == 0:
                    time.sleep(0.005)
            last = (n_msgs - 1) * per_message
            assert col.wait(lambda: all(last in col.preds(s) for s in ids), 30)
            time.sleep(0.2)
            gaps = col.events("gap")
    finally:
        stop.set()
        th.join(5)
        upstream.close(0)
        ctx.term()
    assert len(dropped) == sum(len(d) for d in drops.values())
    gaps = [m for _, m in gaps if m.sensor in ids]
    got = {(m.sensor, m.meta["from_seq"], m.meta["to_seq"], m.meta["action"]) for m in gaps}
    assert len(gaps) == k and got == expected  # exactly k gaps, the right ranges, no false gap
    for i, s in enumerate(ids):
        preds = col.preds(s)
        keep = [q for q in range(n_msgs * per_message) if q // per_message not in drops[s]]
        assert sorted(preds) == keep
        # reference: the model over the received samples, state carried over small gaps and
        # restarted from zero after the large one
        segments = [[q for q in keep if q < big_start * per_message], [q for q in keep if q >= big_start * per_message]] \
            if s == big_sensor else [keep]
        for seg in segments:
            ref = offline(x[s][seg])
            y = np.array([preds[q][1][0] for q in seg])
            assert np.abs(y - ref).max() < 1e-5
    figures["3_proxy_drops"] = {"messages": sensors * n_msgs, "drops": k, "gaps_reported": len(gaps),
                                "false_gaps": 0, "resets": 1, "continued": k - 1}


def check_policy(offline, preds: dict[int, tuple[int, np.ndarray]], gaps: list[P.Message], k: int, first: int, last: int) -> None:
    """Predictions equal the offline model over the received samples: carried over gaps with
    action ``continue``, restarted from zero state at gaps with action ``reset``."""
    received = sorted(q for q in preds if first <= q <= last)
    cuts = sorted(g.meta["to_seq"] + 1 for g in gaps if g.meta["action"] == "reset")
    bounds = [first, *cuts, last + 1]
    x = wave(first, last - first + 1, k)
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = [q for q in received if a <= q < b]
        if seg:
            y = np.array([preds[q][1][0] for q in seg])
            assert np.abs(y - offline(x[np.array(seg) - first])).max() < 1e-5


# ------------------------------------------------------------------ 4. stalled consumer, HWM overflow


def test_paused_subscriber_overflows_and_reports_every_drop_with_a_lag_alarm(tiny_weights, offline, figures):
    sensors, rate, spm, pause_s = 16, 1000.0, 10, 5.0
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    procs: list[Publisher] = []
    with killing(procs), serving(tiny_weights, feeds=(endpoint,), rcvhwm=100) as (service, _, col):
        # started once the collector listens, so that it sees every prediction from the first
        pub = Publisher(endpoint, "--sensors", str(sensors), "--rate", str(rate), "--spm", str(spm),
                        "--duration", str(pause_s + 2.0), "--sndhwm", "100", "--sndbuf", "16384")
        procs.append(pub)
        pub.wait_line("subscribed")
        assert col.wait(lambda: len(col.preds("s0")) >= 500, 20)  # running normally
        t_pause = time.monotonic()
        service.pause(pause_s)
        _, line = pub.wait_line("sent", 30)
        end = int(line.split()[1])
        assert col.wait(lambda: all(end - 1 in col.preds(f"s{k}") for k in range(sensors)), 30)
        assert col.wait(lambda: bool(col.events("lag_cleared")), 5)
        time.sleep(0.3)
        stats = service.snapshot()
    lag = [t for t, m in col.events("lag")]
    cleared = col.events("lag_cleared")
    assert lag and lag[0] - t_pause < 1.0 + MARGIN_S, lag[:1]  # the alarm, within 1 s of the stall
    assert cleared[0][0] > t_pause + pause_s * 0.9 and cleared[0][1].meta["duration_s"] > pause_s * 0.8
    silent_during_pause = [m for t, m in col.events("sensor_silent") if t < cleared[0][0]]
    assert not silent_during_pause  # a stalled consumer is not 16 silent sensors
    lost_total = 0
    for k in range(sensors):
        s = f"s{k}"
        preds = col.preds(s)
        first = min(preds)
        gaps = [m for _, m in col.events("gap", s)]
        ranges = [(m.meta["from_seq"], m.meta["to_seq"]) for m in gaps]
        assert coverage_is_exact(set(preds), ranges, first, end - 1)  # every lost sample reported
        assert sum(m.meta["count"] for m in gaps) == stats["sensor_counters"].get(s, {}).get("gap_samples", 0)
        lost_total += sum(b - a + 1 for a, b in ranges)
        check_policy(offline, preds, gaps, k, first, end - 1)  # and recovered: correct afterwards
    assert lost_total > 0 and stats["counters"]["gap_samples"] == lost_total
    assert stats["health"]["counters"]["lag"] >= 1
    figures["4_hwm_overflow"] = {
        "sensors": sensors, "rate_hz": rate, "samples_per_message": spm, "pause_s": pause_s,
        "samples_lost": lost_total, "gaps": int(stats["counters"]["gap"]), "lost_reported_exactly": True,
        "lag_alarm_after_s": round(lag[0] - t_pause, 3), "lag_cleared_after_s": round(cleared[0][0] - t_pause, 3),
        "max_backlog_s": cleared[0][1].meta["max_backlog_s"]}


# ------------------------------------------------------------------ 5. publisher kill -9 and restart


def test_publisher_killed_and_restarted_20_times_gives_20_epochs_and_fresh_state(tiny_weights, offline, figures):
    lives = 21  # the first life and 20 restarts
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    epochs: list[int] = []
    procs: list[Publisher] = []
    t0 = time.monotonic()
    with serving(tiny_weights, feeds=(endpoint,)) as (service, _, col), killing(procs):
        nxt = Publisher(endpoint, "--sensors", "2", "--rate", "2000", "--spm", "10")
        procs.append(nxt)
        for life in range(lives):
            pub = nxt
            try:
                epoch = pub.epoch
                # the next life starts now and binds as soon as this one is dead
                nxt = Publisher(endpoint, "--sensors", "2", "--rate", "2000", "--spm", "10") if life + 1 < lives else None
                if nxt is not None:
                    procs.append(nxt)
                epochs.append(epoch)

                def running() -> bool:
                    st = service.engine.sensors.get("s1")
                    return st is not None and st.epoch == epoch and st.next_seq >= 100

                assert col.wait(running, 20), f"life {life} never reached the service"
                time.sleep(random.Random(life).uniform(0, 0.05))
            finally:
                pub.kill()  # SIGKILL: no goodbye, mid-stream
        time.sleep(0.3)
        stats = service.snapshot()
    took = time.monotonic() - t0
    for k, s in enumerate(("s0", "s1")):
        changes = [m for _, m in col.events("epoch_change", s)]
        assert len(changes) == lives - 1  # 20 new epochs detected
        assert [m.meta["new_epoch"] for m in changes] == epochs[1:]
        assert not col.events("gap", s) and not col.events("backwards", s)
        by_epoch: dict[int, dict[int, np.ndarray]] = {}
        for _, m in col.msgs:
            if m.kind is P.Kind.PRED and m.sensor == s:
                rows = by_epoch.setdefault(m.block.epoch, {})
                for i in range(m.block.count):
                    rows[m.block.seq + i] = m.block.data[i, 0]
        assert sorted(by_epoch) == sorted(epochs)
        ref = offline(wave(0, max(max(r) for r in by_epoch.values()) + 1, k))
        for epoch, rows in by_epoch.items():
            seqs = sorted(rows)
            assert seqs == list(range(len(seqs)))  # each life from its seq 0, nothing of another life
            y = np.array([rows[q] for q in seqs])
            assert np.abs(y - ref[: len(seqs)]).max() < 1e-5  # (h, c) started from zero at every epoch
    assert stats["counters"]["epoch_change"] == 2 * (lives - 1)
    figures["5_publisher_restarts"] = {"restarts": lives - 1, "epochs_detected": lives - 1, "state_resets": lives - 1,
                                       "mixed_epoch_predictions": 0, "seconds": round(took, 1)}


# ------------------------------------------------------------------ 6. late joiner, silent peer, heartbeats


def test_late_joiner_silent_peer_heartbeat_and_reconnection(tiny_weights, offline, figures):
    rate, hb_ms = 200.0, 200
    interval = 1.0 / rate
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, "--sensors", "2", "--rate", str(rate), "--seq0", "5000", "--nowait")
    pub.wait_line("subscribed")
    time.sleep(0.5)  # the publisher has been running before the service exists
    fig: dict = {}
    try:
        with serving(tiny_weights, feeds=(endpoint,), health=HealthConfig(heartbeat_ivl_ms=hb_ms, feed_heartbeat=True)) as (service, _, col):
            assert col.wait(lambda: len(col.preds("s0")) >= 50 and len(col.preds("s1")) >= 50, 20)
            # the publisher ran before the service: its new_sensor events can precede the
            # collector's subscription (slow joiner), so ask the service itself
            assert {"s0", "s1"} <= set(service.engine.sensors)
            assert min(col.preds("s0")) > 5000 and not col.events("gap"), col.events("gap")  # late joiner: no false gap
            # a hung peer: SIGSTOP keeps its TCP connection open but silent
            after = lambda type_, t0: [t for t, _ in col.events(type_) if t >= t0]  # noqa: E731
            t_stop = time.monotonic()
            pub.signal(signal.SIGSTOP)
            assert col.wait(lambda: len(after("sensor_silent", t_stop)) >= 2 and after("peer_disconnected", t_stop), 10)
            silent = after("sensor_silent", t_stop)[1] - t_stop
            dropped = after("peer_disconnected", t_stop)[0] - t_stop
            assert silent <= 3 * interval + 0.5 + MARGIN_S, silent  # application level: sensor_silent
            assert dropped <= 3 * hb_ms / 1000 + 0.5 + MARGIN_S, dropped  # ZMTP heartbeat: connection dropped
            # it comes back
            t_cont = time.monotonic()
            pub.signal(signal.SIGCONT)
            assert col.wait(lambda: after("peer_connected", t_cont) and len(after("sensor_back", t_cont)) >= 2, 10)
            rejoined = after("peer_connected", t_cont)[0] - t_cont
            assert rejoined <= 1.0 + MARGIN_S, rejoined
            fig.update(silent_detected_s=round(silent, 3), heartbeat_drop_s=round(dropped, 3), rejoin_after_sigcont_s=round(rejoined, 3))
            # killed, then restarted on the same endpoint
            t_kill = time.monotonic()
            pub.kill()
            assert col.wait(lambda: bool(after("peer_disconnected", t_kill)), 5)
            fig["disconnect_after_kill_s"] = round(after("peer_disconnected", t_kill)[0] - t_kill, 3)
            pub = Publisher(endpoint, "--sensors", "2", "--rate", str(rate))
            t_bound, _ = pub.wait_line("bound")
            assert col.wait(lambda: bool(after("peer_connected", t_bound)), 10)
            reconnect = after("peer_connected", t_bound)[0] - t_bound
            assert reconnect <= 1.0 + MARGIN_S, reconnect
            fig["reconnect_after_restart_s"] = round(reconnect, 3)
            new_epoch = pub.epoch
            assert col.wait(lambda: any(m.meta["new_epoch"] == new_epoch for _, m in col.events("epoch_change", "s0")), 10)
            stats = service.snapshot()
        # every loss around the stop was reported: received + gaps tile each epoch's range
        for k in range(2):
            s = f"s{k}"
            preds = {q: v for q, v in col.preds(s).items()}
            first_epoch = {q: v for q, v in preds.items() if v[0] != new_epoch}
            gaps = [m for _, m in col.events("gap", s)]
            first, last = min(first_epoch), max(first_epoch)
            assert coverage_is_exact(set(first_epoch), [(g.meta["from_seq"], g.meta["to_seq"]) for g in gaps], first, last)
    finally:
        pub.stop()
    assert stats["health"]["counters"]["sensor_silent"] >= 2
    figures["6_silence_heartbeat"] = {"message_interval_s": interval, "heartbeat_ivl_s": hb_ms / 1000,
                                      "false_gaps_late_joiner": 0, **fig}


