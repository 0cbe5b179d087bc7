"""``radarstream replay``: publish a recording's samples again, with their original pacing."""

from __future__ import annotations

import argparse
import sys

from tools.options import add_curve_arguments, add_time_window, curve_config, sensor_list, topic_kinds


def _speed(text: str) -> float:
    from streamer.recording.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError:
        raise argparse.ArgumentTypeError("speed must be a positive number or 'max'") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number of seconds >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0 seconds")
    return value


def cmd_replay(args: argparse.Namespace) -> int:
    import threading
    import time

    import zmq

    from streamer.recording.format import RecordingError
    from streamer.recording.replay import PeerWatch, Replayer, close_and_flush, publish_recording, replay_socket
    from streamer.wire.security import Curve, endpoint_mode, exposure_warning
    from tools.process import install_signal_stop

    replayer = Replayer(args.file, kinds=args.kinds, sensors=sensor_list(args), speed=args.speed, clock=args.clock,
                        start_s=args.start, end_s=args.end, loop=args.loop)
    if not replayer.topics:
        raise RecordingError(f"nothing to replay: no {','.join(replayer.kinds)} channel for the selected sensors "
                             f"(recorded: {', '.join(replayer.recording.topics()) or 'none'})")
    curve_cfg = curve_config(args)
    warning = exposure_warning(args.pub, "bind", curve_cfg is not None)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    ctx = zmq.Context()  # our own: terminating it is what flushes the queue before exit
    curve = Curve(curve_cfg, ctx) if curve_cfg is not None else None
    try:
        sock, endpoint = replay_socket(ctx, args.pub, sndhwm=args.sndhwm, curve=curve)
    except BaseException:
        if curve is not None:
            curve.stop()
        ctx.term()
        raise

    def alarm(line: str, level: int) -> None:
        print(("warning: " if level >= 30 else "") + line, file=sys.stderr, flush=True)

    connecting = endpoint_mode(args.pub, "bind")[0] == "connect"
    peers = PeerWatch(sock, reconnect=[endpoint] if connecting else None, alarm=alarm)
    stop = threading.Event()
    install_signal_stop(stop.set)
    speed = "max" if replayer.speed == float("inf") else f"x{replayer.speed:g}"
    print(f"replaying {args.file} ({replayer.duration_s:.3f} s, {len(replayer.topics)} channel(s)) at {speed} "
          f"-> {endpoint}", flush=True)
    subscribed = False
    if args.wait > 0:
        deadline = time.monotonic() + args.wait
        while not stop.is_set():  # in slices: a refused handshake is reconnected meanwhile (peers.poll)
            left = deadline - time.monotonic()
            if sock.poll(int(max(0.0, min(left, 0.1)) * 1000)):
                sock.recv()
                subscribed = True
                break
            peers.poll()
            if left <= 0:
                print(f"warning: no subscriber after {args.wait:g} s; replaying anyway", file=sys.stderr)
                break
    stats = publish_recording(replayer, sock, stop, stall_timeout_s=args.stall_timeout, peers=peers)
    print(f"sent {stats.messages} messages ({stats.samples} samples) in {stats.seconds:.3f} s, "
          f"{stats.passes} pass(es)" + (f", waited {stats.blocked_s:.3f} s for subscribers" if stats.blocked_s else ""),
          flush=True)
    rc = 0
    damage = replayer.recording.integrity.summary(args.file)
    if damage:
        print(f"warning: {damage}", file=sys.stderr, flush=True)
    if stats.stalled:
        print(f"warning: not delivered: {stats.not_sent} message(s) never sent: the subscribers took nothing "
              f"for {args.stall_timeout:g} s (--stall-timeout), replay stopped", file=sys.stderr, flush=True)
        rc = 1
    peers.close()  # reads the last connection events first
    watch = peers.refusal_watch
    if watch is not None and watch.refusals:
        print(f"warning: {watch.refusals} refused handshake(s), {watch.reconnects} reconnection(s) after a refusal; "
              "what was sent while refused went nowhere", file=sys.stderr, flush=True)
    if peers.disconnects:
        print(f"warning: not delivered: a subscriber disconnected {peers.disconnects} time(s) during the replay; "
              f"what was queued for it then (up to {args.sndhwm} message(s) each time, --sndhwm) was lost and "
              "shows downstream as sequence gaps", file=sys.stderr, flush=True)
        rc = 1
    if not subscribed and not peers.connects and stats.messages:
        print(f"warning: not delivered: no subscriber connected; the {stats.messages} message(s) went nowhere",
              file=sys.stderr, flush=True)
    linger = 0.0 if stop.is_set() else args.linger
    if curve is not None:
        curve.stop()  # the authenticator (binding with CURVE) before the context terminates
    flushed = close_and_flush(sock, ctx, linger)
    if flushed and rc == 0:
        print(f"delivered: the {stats.messages} sent message(s) were all written to the subscribers' "
              "connections before exit", flush=True)
    elif flushed:
        print("flushed: what was still queued was written out before exit", flush=True)
    elif not stop.is_set():
        print(f"warning: not delivered: the linger ({args.linger:g} s, --linger) ran out with messages still "
              f"queued; ZeroMQ discarded up to {min(stats.messages, args.sndhwm)} of the last sent message(s)",
              file=sys.stderr, flush=True)
        rc = 1
    return rc


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
    rp.add_argument("--sndhwm", type=_count, default=10_000, metavar="N",
                    help="messages queued per subscriber; when a subscriber's queue is full the replay waits "
                         "for it (back-pressure, nothing is dropped) (default 10000)")
    rp.add_argument("--stall-timeout", type=_positive_seconds, default=30.0, metavar="S",
                    help="stop, and report what was not sent, when the subscribers take nothing for S seconds "
                         "(default 30)")
    rp.add_argument("--linger", type=_seconds, default=30.0, metavar="S",
                    help="at the end, wait up to S seconds for the queued messages to be sent before exiting; "
                         "what is still queued then is reported as not delivered (default 30)")
    add_curve_arguments(rp)
    rp.set_defaults(func=cmd_replay)
