"""``radarstream serve``: the causal model on a ZeroMQ sample feed, publishing predictions.

Option defaults and help texts come from the config fields (``ServiceConfig``, ``StreamPolicy``,
``RescoreConfig``, ``HealthConfig``) through :func:`tools.options.add_field_option`.
"""

from __future__ import annotations

import argparse

from tools.options import add_curve_arguments, add_field_option, curve_config, field_default


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import sys

    from tools import supervise as S

    supervised = S.supervised_info()
    if args.supervise and supervised is None:  # the supervisor: no model, no sockets (tools/supervise.py)
        from tools.process import setup_logging

        setup_logging(args.verbose)
        cfg = S.SuperviseConfig(max_restarts=args.max_restarts, restart_window_s=args.restart_window)
        if "serve" not in sys.argv[1:]:
            raise S.SuperviseError("--supervise restarts the command line it was started with: "
                                   "run it as `radarstream serve --supervise …`")
        state = None if args.state_file is not None else S.default_state_file(args.pub)
        return S.Supervisor(S.child_argv(sys.argv[1:], state), cfg).run()

    from streamer.live.alerts import AlertConfig
    from streamer.live.backends import make_backend
    from streamer.live.engine import StreamPolicy
    from streamer.live.health import HealthConfig
    from streamer.live.rescore import RescoreConfig
    from streamer.live.service import ServiceConfig, StreamService
    from tools.process import install_signal_stop, limit_threads, setup_logging

    setup_logging(args.verbose)
    limit_threads(1)
    backend = make_backend(args.backend, args.weights, threads=1, profile=args.radar)
    alert = AlertConfig(args.alert_dmin_m, args.alert_confidence) if args.alert_dmin_m is not None else None
    cfg = ServiceConfig(
        feeds=tuple(args.feed or field_default(ServiceConfig, "feeds")), pub=args.pub,
        stats_interval_s=args.stats_interval, policy=StreamPolicy(max_gap=args.max_gap), rcvhwm=args.rcvhwm,
        max_samples_per_message=args.max_samples, checkpoint_every=args.checkpoint_every,
        hybrid=not args.no_hybrid, alert=alert, domain_check=not args.no_domain_check,
        rescore=RescoreConfig(window=args.window, hop=args.hop, threshold_m=args.threshold_m,
                              backend=args.backend if args.backend in ("onnx", "torch") else "onnx", process=True)
        if args.rescore else None,
        health=HealthConfig(lag_threshold_s=args.lag_threshold, max_sensor_rate=args.max_sensor_rate,
                            heartbeat_ivl_ms=args.heartbeat_ivl, feed_heartbeat=args.feed_heartbeat),
        curve=curve_config(args), state_file=args.state_file, state_every_s=args.state_every,
        state_strict=args.state_strict, restart=supervised if supervised and supervised.get("restarts") else None,
    )
    service = StreamService(cfg, backend, weights_dir=args.weights)
    install_signal_stop(service.stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: service.reload_keys())  # re-read the CURVE allow-list
    service.run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from streamer.live.alerts import AlertConfig
    from streamer.live.engine import StreamPolicy
    from streamer.live.health import HealthConfig
    from streamer.live.rescore import RescoreConfig
    from streamer.live.service import ServiceConfig

    sv = sub.add_parser("serve", help="run the causal model on a ZeroMQ sample feed and publish predictions")
    feeds = " ".join(field_default(ServiceConfig, "feeds"))
    sv.add_argument("--feed", action="append", default=None, metavar="ENDPOINT",
                    help="sample feed to SUBscribe to (connects; prefix @ to bind); repeatable. "
                         f"Default {feeds}")
    add_field_option(sv, "--pub", ServiceConfig, "pub", metavar="ENDPOINT",
                     help="where to PUBlish pred/event messages (binds; prefix > to connect)")
    sv.add_argument("--backend", choices=["onnx", "torch", "fused", "auto"], default="onnx",
                    help="inference backend (default: onnx; fused: one numba kernel, fastest at batch 1-8; "
                         "auto: fused below the crossover measured at start-up, onnx above)")
    sv.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: shipped)")
    sv.add_argument("--radar", default=None, metavar="PROFILE.json",
                    help="the radar's profile (R_max, dwell rate, noise RMS, range noise; docs/simulator.md); "
                         "default: the profile stored with the weights")
    sv.add_argument("--alert-dmin-m", type=float, default=None, metavar="M",
                    help="publish near_miss events when the target is likely to pass closer than M metres (off by default)")
    add_field_option(sv, "--alert-confidence", AlertConfig, "confidence", metavar="P")
    sv.add_argument("--no-domain-check", action="store_true",
                    help="do not compare streams with the radar profile (no out_of_domain events)")
    add_field_option(sv, "--stats-interval", ServiceConfig, "stats_interval_s", metavar="S",
                     help="seconds between stats")
    add_field_option(sv, "--max-gap", StreamPolicy, "max_gap")
    add_field_option(sv, "--rcvhwm", ServiceConfig, "rcvhwm", help="receive high-water mark (messages)")
    add_field_option(sv, "--max-samples", ServiceConfig, "max_samples_per_message",
                     help="largest accepted message (samples)")
    add_field_option(sv, "--checkpoint-every", ServiceConfig, "checkpoint_every", type=int, metavar="N")
    sv.add_argument("--rescore", action="store_true",
                    help="re-score completed windows with the bidirectional model (rescore/<sensor>), beside the causal path")
    add_field_option(sv, "--window", RescoreConfig, "window")
    add_field_option(sv, "--hop", RescoreConfig, "hop")
    add_field_option(sv, "--threshold-m", RescoreConfig, "threshold_m")
    sv.add_argument("--no-hybrid", action="store_true",
                    help="do not run the classical CPA fit beside the LSTM (and no near-miss alerts; pred then has "
                         "3 channels, or 8 with NaN classical channels when the model predicts its uncertainty)")
    add_field_option(sv, "--lag-threshold", HealthConfig, "lag_threshold_s", metavar="S")
    add_field_option(sv, "--max-sensor-rate", HealthConfig, "max_sensor_rate", type=float, metavar="HZ",
                     default_text="unlimited")
    add_field_option(sv, "--heartbeat-ivl", HealthConfig, "heartbeat_ivl_ms", metavar="MS")
    add_field_option(sv, "--feed-heartbeat", HealthConfig, "feed_heartbeat", action="store_true")
    add_curve_arguments(sv)
    from tools.supervise import SuperviseConfig, default_state_file

    add_field_option(sv, "--state-file", ServiceConfig, "state_file", metavar="PATH", type=str)
    add_field_option(sv, "--state-every", ServiceConfig, "state_every_s", metavar="S")
    add_field_option(sv, "--state-strict", ServiceConfig, "state_strict", action="store_true")
    sv.add_argument("--supervise", action="store_true",
                    help="run serve as a child process and restart it when it dies (a signal, or a status other "
                         "than 0 and 2) with back-off 0.5 s doubling to 30 s; SIGTERM/SIGINT/SIGHUP are "
                         "forwarded; the child continues from --state-file (default: radarstream-serve-<--pub>.state "
                         f"in the working directory, e.g. {default_state_file(field_default(ServiceConfig, 'pub'))}) "
                         "and publishes a `restarted` event on event/_service")
    add_field_option(sv, "--max-restarts", SuperviseConfig, "max_restarts", metavar="N")
    add_field_option(sv, "--restart-window", SuperviseConfig, "restart_window_s", metavar="S")
    sv.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sv.set_defaults(func=cmd_serve)
