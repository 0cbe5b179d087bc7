"""``radarstream replay``: publish a recording's samples again, with their original pacing."""

from __future__ import annotations

import argparse
import sys

from tools.options import add_time_window, sensor_list, topic_kinds


def _speed(text: str) -> float:
    from streamer.recording.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError:
        raise argparse.ArgumentTypeError("speed must be a positive number or 'max'") from None


def cmd_replay(args: argparse.Namespace) -> int:
    import threading

    import zmq

    from streamer.recording.format import RecordingError, attach
    from streamer.recording.replay import Replayer, publish_recording
    from tools.process import install_signal_stop

    replayer = Replayer(args.file, kinds=args.kinds, sensors=sensor_list(args), speed=args.speed, clock=args.clock,
                        start_s=args.start, end_s=args.end, loop=args.loop)
    if not replayer.topics:
        raise RecordingError(f"nothing to replay: no {','.join(replayer.kinds)} channel for the selected sensors "
                             f"(recorded: {', '.join(replayer.recording.topics()) or 'none'})")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)  # a PUB that also sees subscriptions: we can wait for a subscriber
    sock.setsockopt(zmq.SNDHWM, args.sndhwm)
    endpoint = attach(sock, args.pub, "bind")
    stop = threading.Event()
    install_signal_stop(stop.set)
    speed = "max" if replayer.speed == float("inf") else f"x{replayer.speed:g}"
    print(f"replaying {args.file} ({replayer.duration_s:.3f} s, {len(replayer.topics)} channel(s)) at {speed} "
          f"-> {endpoint}", flush=True)
    if args.wait > 0:
        if sock.poll(int(args.wait * 1000)):
            sock.recv()
        else:
            print(f"warning: no subscriber after {args.wait:g} s; replaying anyway", file=sys.stderr)
    stats = publish_recording(replayer, sock, stop)
    print(f"sent {stats.messages} messages ({stats.samples} samples) in {stats.seconds:.3f} s, "
          f"{stats.passes} pass(es)", flush=True)
    sock.close(linger=0 if stop.is_set() else 30_000)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("replay", help="publish a recording's samples with their original pacing")
    rp.add_argument("file", metavar="FILE.mcap", help="finished recording (repair a torn one first)")
    rp.add_argument("--pub", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                    help="where to publish (binds; prefix > to connect). Default: the simulator's endpoint")
    rp.add_argument("--speed", type=_speed, default=1.0, metavar="X|max",
                    help="pacing factor: 1 real time, 10 ten times faster, max as fast as possible (default 1)")
    add_time_window(rp)
    rp.add_argument("--loop", action="store_true",
                    help="start again at the end; each pass advances the epochs by one (a publisher restart)")
    rp.add_argument("--kinds", type=topic_kinds, default=("samples",), metavar="K[,K...]",
                    help="recorded kinds to publish (default samples)")
    rp.add_argument("--clock", choices=["log", "sample"], default="log",
                    help="pace on receive times (log) or on the samples' own timestamps (sample)")
    rp.add_argument("--wait", type=float, default=2.0, metavar="S",
                    help="wait up to S seconds for a first subscriber before sending (default 2; 0: no wait)")
    rp.add_argument("--sndhwm", type=int, default=1_000_000, metavar="N",
                    help="send queue in messages before ZeroMQ drops for a slow subscriber (default 1000000)")
    rp.set_defaults(func=cmd_replay)
