"""CurveZMQ for radarstream: key files, socket roles, an allow-list authenticator, exposure checks.

Why this module exists: CURVE alone encrypts but lets *any* client key in, and a CURVE server
socket without a ZAP handler accepts everyone silently. Here a socket that binds is the CURVE
server (server secret key + ZAP domain + ``ZMQ_ZAP_ENFORCE_DOMAIN``, so a missing authenticator
refuses every client: fail closed), a socket that connects is a CURVE client (its own keypair +
the server's public key), and the authenticator admits exactly the client public keys found in an
allow-list directory, logging every refusal. Depends on pyzmq only (the recorder imports it without
loading the model stack).

Key directory layout (``radarstream keys DIR``; docs/reliability.md "Security")::

    DIR/server.key                      server public certificate (give to every client)
    DIR/server.key_secret               server secret (mode 0600; only on hosts that bind)
    DIR/<client>.key                    a client's public certificate
    DIR/<client>.key_secret             that client's secret (mode 0600; only on that client)
    DIR/authorized_clients/<client>.key allow-list: public certificates of admitted clients
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq

from radarstream.errors import RadarstreamError

log = logging.getLogger("radarstream.security")

SERVER_NAME = "server"
DEFAULT_CLIENT = "client"
ALLOW_DIR = "authorized_clients"
ZAP_DOMAIN = "radarstream"
"""ZAP domain of every radarstream server socket (the authenticator answers for this domain only)."""

Role = Literal["server", "client"]

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SECRET_BANNER = (
    "#   ****  Generated on {now} by radarstream keys  ****\n"
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
)
_PUBLIC_BANNER = (
    "#   ****  Generated on {now} by radarstream keys  ****\n"
    "#   ZeroMQ CURVE Public Certificate\n"
    "#   Exchange securely, or verify its contents after the exchange.\n\n"
)


class SecurityError(RadarstreamError, RuntimeError):
    """Keys missing, unreadable, too widely readable, or a socket set-up that CURVE cannot do."""


@dataclass(frozen=True)
class CurveConfig:
    """Where this process finds its keys; every process of a deployment may share one directory."""

    keys_dir: str
    client: str = DEFAULT_CLIENT
    """Which client keypair (``<client>.key_secret``) this process uses on sockets that connect."""
    allow_dir: str | None = None
    """Allow-list of client public certificates (default ``keys_dir/authorized_clients``)."""
    reload_interval_s: float = 1.0
    """How often a server process looks at the allow-list directory for changes (0: only on
    explicit reload / SIGHUP)."""

    @property
    def allow_list_dir(self) -> Path:
        return Path(self.allow_dir) if self.allow_dir is not None else Path(self.keys_dir) / ALLOW_DIR


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    """Z85-encoded public key (40 bytes)."""
    secret: bytes | None
    """Z85-encoded secret key, None for a public certificate."""


# ------------------------------------------------------------------ key files


def _write_cert(path: Path, public: bytes, secret: bytes | None, force: bool) -> None:
    """Write a certificate in the czmq/pyzmq text format; secrets are created 0600 (never a window
    where they are readable by others)."""
    now = datetime.datetime.now().isoformat(timespec="seconds")
    body = (_SECRET_BANNER if secret else _PUBLIC_BANNER).format(now=now) + "metadata\ncurve\n"
    body += f'    public-key = "{public.decode()}"\n'
    if secret:
        body += f'    secret-key = "{secret.decode()}"\n'
    mode = 0o600 if secret else 0o644
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; a forced rewrite keeps no old mode
        os.write(fd, body.encode())
    finally:
        os.close(fd)


def create_keys(keys_dir: str | Path, clients: Iterable[str] = (DEFAULT_CLIENT,), *, force: bool = False) -> list[Path]:
    """Create the server keypair and one keypair per client, and admit each new client.

    Existing keys are kept (a secret is never silently replaced, a revoked client is not
    re-admitted) unless ``force``. Returns the files written."""
    base = Path(keys_dir)
    names = list(clients)
    for name in [SERVER_NAME, *names]:
        if not _NAME_RE.fullmatch(name):
            raise SecurityError(f"invalid key name {name!r} (1-64 of A-Z a-z 0-9 _ . -)")
    if SERVER_NAME in names:
        raise SecurityError(f"{SERVER_NAME!r} is the server's name; choose another client name")
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    allow = base / ALLOW_DIR
    allow.mkdir(exist_ok=True, mode=0o755)
    written: list[Path] = []
    for name in [SERVER_NAME, *names]:
        pub_path, sec_path = base / f"{name}.key", base / f"{name}.key_secret"
        if sec_path.exists() and not force:
            continue  # kept; and a revoked client (removed from the allow-list) stays revoked
        public, secret = zmq.curve_keypair()
        _write_cert(sec_path, public, secret, force=True)
        _write_cert(pub_path, public, None, force=True)
        written += [pub_path, sec_path]
        if name != SERVER_NAME:
            admitted = allow / f"{name}.key"
            _write_cert(admitted, public, None, force=True)
            written.append(admitted)
    return written


def load_keypair(path: str | Path, *, need_secret: bool = False) -> KeyPair:
    """Read a certificate; a secret certificate readable by group or others is refused (like ssh)."""
    from zmq.auth import load_certificate

    path = Path(path)
    if not path.is_file():
        raise SecurityError(f"key file not found: {path} (create keys with `radarstream keys DIR`)")
    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"{path}: not a CURVE certificate ({exc})") from exc
    if secret is not None and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"{path}: secret key is readable by other users; run `chmod 600 {path}`")
    if need_secret and secret is None:
        raise SecurityError(f"{path}: has no secret key")
    if len(public) != 40 or (secret is not None and len(secret) != 40):
        raise SecurityError(f"{path}: malformed key (expected 40 Z85 characters)")
    return KeyPair(public, secret)


def load_allow_list(directory: str | Path) -> frozenset[bytes]:
    """Public keys (Z85) of every ``*.key`` certificate in ``directory``; a missing or unreadable
    directory or certificate admits nobody new (fail closed), and says so in the log."""
    directory = Path(directory)
    keys: set[bytes] = set()
    try:
        files = sorted(directory.glob("*.key"))
        if not directory.is_dir():
            raise OSError("not a directory")
    except OSError as exc:
        log.error("allow-list %s unreadable (%s): no client is admitted", directory, exc)
        return frozenset()
    for f in files:
        try:
            keys.add(load_keypair(f).public)
        except SecurityError as exc:
            log.error("allow-list entry skipped: %s", exc)
    return frozenset(keys)


def _fingerprint(directory: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.glob("*.key")))
    except OSError:
        return ("unreadable",)


# ------------------------------------------------------------------ endpoints


def endpoint_mode(endpoint: str, default: str) -> tuple[str, str]:
    """``("bind"|"connect", bare endpoint)`` by the czmq convention (``@`` binds, ``>`` connects)."""
    if endpoint.startswith("@"):
        return "bind", endpoint[1:]
    if endpoint.startswith(">"):
        return "connect", endpoint[1:]
    return default, endpoint


def socket_role(endpoints: Iterable[str], default: str) -> Role:
    """CURVE role of a socket from its endpoints: binding sockets serve, connecting ones are
    clients. A socket that does both cannot hold one role, so it is refused with CURVE."""
    modes = {endpoint_mode(e, default)[0] for e in endpoints}
    if len(modes) != 1:
        raise SecurityError("with CURVE a socket must bind all its endpoints or connect all of them "
                            f"(got {sorted(endpoints)})")
    return "server" if modes == {"bind"} else "client"


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for endpoints reachable only from this host: ipc://, inproc://, tcp on 127.0.0.0/8,
    ::1 or localhost. Anything else (``*``, 0.0.0.0, an interface name, a public address) is not."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport not in ("tcp", "ws", "wss"):
        return False  # pgm/epgm/udp/vmci/norm: multicast or remote by nature
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.split(";")[-1].strip("[]")  # "src;dst" form: the destination host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(endpoint: str, default: str, curve: bool) -> str | None:
    """The warning to print when ``endpoint`` binds beyond this host without CURVE, else None."""
    mode, bare = endpoint_mode(endpoint, default)
    if curve or mode != "bind" or is_loopback_endpoint(bare):
        return None
    return (f"binding {bare} without CURVE: anyone who can reach this host can read and inject "
            f"streams; use --curve-keys DIR (radarstream keys DIR) or bind 127.0.0.1")


# ------------------------------------------------------------------ authenticator


class AllowListAuthenticator:
    """ZAP handler of one context (pyzmq's ThreadAuthenticator) whose CURVE decision is membership
    of the client's public key in the allow-list; why own the decision: pyzmq logs refusals at
    debug level only, and keeps the old keys when a reload fails (fail open)."""

    WARNINGS_PER_INTERVAL = 5
    """Refusal lines per ``log_interval_s`` for all keys together (random keys: each is new, so
    the per-key limit alone let 300 handshakes write 300 lines in 7.6 s); the rest is summed up."""

    def __init__(self, ctx: zmq.Context, allow_dir: str | Path, *, log_interval_s: float = 5.0):
        self.ctx = ctx
        self.allow_dir = Path(allow_dir)
        self.log_interval_s = log_interval_s
        self.keys: frozenset[bytes] = frozenset()
        self.allowed = 0
        self.denied = 0
        self._fp: tuple = ()
        self._last_log: dict[bytes, tuple[float, int]] = {}
        self._window = (-1e9, 0, 0)  # (start, warnings logged, refusals not logged) of all keys together
        self._auth = None

    def start(self) -> AllowListAuthenticator:
        from zmq.auth.thread import ThreadAuthenticator

        self.reload()
        auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("radarstream.security.zap"))
        try:
            auth.start()
        except zmq.ZMQError as exc:
            raise SecurityError(f"cannot start the CURVE authenticator ({exc}): one authenticator per "
                                "ZeroMQ context; give each CURVE service its own context") from exc
        auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self)
        self._auth = auth
        return self

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def changed(self) -> bool:
        """The allow-list directory differs from what was last loaded (names, sizes, mtimes)."""
        return _fingerprint(self.allow_dir) != self._fp

    def reload(self) -> tuple[frozenset[bytes], frozenset[bytes]]:
        """Re-read the allow-list; returns (added, removed) keys. New handshakes see the new list at
        once; connections already admitted stay until the caller drops them (the service re-binds)."""
        self._fp = _fingerprint(self.allow_dir)
        new = load_allow_list(self.allow_dir)
        added, removed = new - self.keys, self.keys - new
        self.keys = new  # one reference swap: the ZAP thread reads either the old or the new set
        if added or removed:
            log.info("allow-list %s reloaded: %d key(s), +%d -%d", self.allow_dir, len(new), len(added), len(removed))
        return added, removed

    def callback(self, domain: str, key: bytes) -> bool:
        """Called in the ZAP thread for every CURVE handshake with the client's Z85 public key."""
        if domain == ZAP_DOMAIN and key in self.keys:
            self.allowed += 1
            return True
        self.denied += 1
        now = time.monotonic()
        last, suppressed = self._last_log.get(key, (-1e9, 0))
        start, logged, hidden = self._window
        if now - start >= self.log_interval_s:
            if hidden:
                log.warning("refused %d more CURVE handshake(s) in the last %.0f s without a line each "
                            "(at most %d lines per %.0f s)", hidden, now - start, self.WARNINGS_PER_INTERVAL,
                            self.log_interval_s)
            start, logged, hidden = now, 0, 0
        if now - last >= self.log_interval_s and logged < self.WARNINGS_PER_INTERVAL:
            more = f" (+{suppressed} more refusals of this key)" if suppressed else ""
            log.warning("refused CURVE client key %s (domain %r): not in the allow-list %s%s",
                        key.decode("ascii", "replace"), domain, self.allow_dir, more)
            if len(self._last_log) > 4096:
                self._last_log.clear()
            self._last_log[key] = (now, 0)
            logged += 1
        else:
            self._last_log[key] = (last, suppressed + 1)
            hidden += 1
        self._window = (start, logged, hidden)
        return False


def server_options(sock: zmq.Socket, server: KeyPair) -> None:
    """CURVE server options. ``ZAP_ENFORCE_DOMAIN``: with no ZAP handler on the context, every
    handshake fails (fail closed) instead of libzmq admitting any client key."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, server.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def client_options(sock: zmq.Socket, client: KeyPair, server_public: bytes) -> None:
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, client.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, client.secret)


class Curve:
    """CURVE for the sockets of one process: the server role for sockets that bind (the allow-list
    authenticator starts with the first of them), the client role for sockets that connect."""

    def __init__(self, config: CurveConfig, ctx: zmq.Context, *, log_interval_s: float = 5.0):
        self.config = config
        self.ctx = ctx
        self.log_interval_s = log_interval_s
        self.authenticator: AllowListAuthenticator | None = None
        self._server: KeyPair | None = None
        self._client: KeyPair | None = None
        self._server_public: bytes | None = None

    def _keys(self, role: Role) -> None:
        base = Path(self.config.keys_dir)
        if role == "server" and self._server is None:
            self._server = load_keypair(base / f"{SERVER_NAME}.key_secret", need_secret=True)
        if role == "client" and self._client is None:
            self._client = load_keypair(base / f"{self.config.client}.key_secret", need_secret=True)
            self._server_public = load_keypair(base / f"{SERVER_NAME}.key").public

    def secure(self, sock: zmq.Socket, role: Role) -> None:
        """Set the CURVE options of ``role`` on ``sock`` (before it binds or connects)."""
        self._keys(role)
        if role == "server":
            if self.authenticator is None:
                self.authenticator = AllowListAuthenticator(self.ctx, self.config.allow_list_dir,
                                                            log_interval_s=self.log_interval_s).start()
            server_options(sock, self._server)
        else:
            client_options(sock, self._client, self._server_public)

    def stop(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


def client_context(config: CurveConfig, *, io_threads: int = 1) -> zmq.Context:
    """A new context whose every socket is a CURVE client of ``config``: for code that creates its
    own sockets and cannot be told about CURVE (the recorder: ``Recorder(cfg, context=...)``)."""
    base = Path(config.keys_dir)
    client = load_keypair(base / f"{config.client}.key_secret", need_secret=True)
    server = load_keypair(base / f"{SERVER_NAME}.key")
    ctx = zmq.Context(io_threads)
    ctx.setsockopt(zmq.CURVE_SERVERKEY, server.public)
    ctx.setsockopt(zmq.CURVE_PUBLICKEY, client.public)
    ctx.setsockopt(zmq.CURVE_SECRETKEY, client.secret)
    return ctx


class RefusalRetry:
    """Reconnect a connecting socket after its handshake was refused, with back-off.

    libzmq closes a connecting CURVE client for good once the server refused it (measured:
    admitting the key afterwards never let it in), so a key admitted after a refusal, an
    allow-list that was unreadable for a moment or a server restarted with the right list would
    leave the client at 0 messages forever. The owner of the socket (one thread) reports
    refusals and successful handshakes and calls :meth:`tick` from its loop."""

    def __init__(self, sock: zmq.Socket, endpoints: list[str], *, first_s: float = 0.5, max_s: float = 30.0):
        self.sock = sock
        self.endpoints = set(endpoints)
        self.first_s, self.max_s = first_s, max_s
        self._delay: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self.retries = 0

    def refused(self, endpoint: str, now: float) -> float | None:
        """A handshake on ``endpoint`` failed: schedule a reconnect; returns its delay (None if
        the endpoint is not one this socket connects to)."""
        if endpoint not in self.endpoints:
            return None
        delay = self._delay.get(endpoint, self.first_s / 2) * 2
        delay = min(delay, self.max_s)
        self._delay[endpoint] = delay
        self._due[endpoint] = now + delay
        return delay

    def connected(self, endpoint: str) -> None:
        self._delay.pop(endpoint, None)
        self._due.pop(endpoint, None)

    def tick(self, now: float) -> list[str]:
        """Reconnect the endpoints whose back-off is over; returns them."""
        done = [ep for ep, t in self._due.items() if t <= now]
        for ep in done:
            del self._due[ep]
            try:
                self.sock.disconnect(ep)
            except zmq.ZMQError:
                pass  # already gone: libzmq dropped the endpoint with the refused connection
            self.sock.connect(ep)
            self.retries += 1
        return done


# ------------------------------------------------------------------ refused connecting clients

HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
"""Socket monitor events a :class:`RefusalWatch` acts on (a monitor may carry others too)."""

_REFUSAL_REASONS = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "handshake_failed",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "handshake_failed_protocol",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "handshake_failed_auth",
}
_PROTOCOL_ERROR_NAMES = {
    int(v): k[len("PROTOCOL_ERROR_"):].lower()
    for k, v in vars(zmq).items() if k.startswith("PROTOCOL_ERROR_") and isinstance(v, int)
}


def describe_refusal(event: int, value: int) -> tuple[str, str] | None:
    """``(reason, detail)`` of a refused handshake from a socket monitor's event and value
    (``zmtp_mechanism_mismatch``, ``zap status 400``, ``errno 32``); None for other events.
    The one decoding of refusals: the service's peer events and :class:`RefusalWatch` use it."""
    reason = _REFUSAL_REASONS.get(int(event))
    if reason is None:
        return None
    if reason == "handshake_failed_protocol":
        return reason, _PROTOCOL_ERROR_NAMES.get(value, str(value))
    if reason == "handshake_failed_auth":
        return reason, f"zap status {value}"
    return reason, f"errno {value}"


@dataclass(frozen=True)
class Refusal:
    """One refused handshake of a connecting socket, as :class:`RefusalWatch` reports it."""

    endpoint: str
    reason: str
    """``handshake_failed_auth`` (the server's authenticator said no: the key is not admitted),
    ``handshake_failed_protocol`` (e.g. CURVE against NULL, a wrong server key) or
    ``handshake_failed`` (no detail: the peer closed, ``detail`` has the errno)."""
    detail: str
    retry_in_s: float
    refusals: int
    """Refusals of this endpoint since it last got in (this one included)."""
    logged: bool
    """This refusal wrote the alarm line (the others of the interval are only counted)."""

    def meta(self) -> dict:
        return {"endpoint": self.endpoint, "reason": self.reason, "detail": self.detail,
                "retry_in_s": round(self.retry_in_s, 3), "refusals": self.refusals}


class RefusalWatch:
    """A connecting socket's handshake monitor driving its :class:`RefusalRetry`, with an alarm.

    The piece every radarstream client that connects shares (record, simulate/replay with ``>``,
    the GUI's receiver): libzmq gives up on a connection whose handshake the server refused, so
    the watch reconnects it with back-off, and says so (``alarm(line, level)``; default: the log):
    one line with the endpoint, the reason and the retry delay at the first refusal, then at most
    one line per ``log_interval_s`` and endpoint (counting the refusals in between), and one line
    when the endpoint gets in again.

    Use from the socket's thread: :meth:`poll` now and then (it never blocks). A caller that
    already monitors the socket for other events (libzmq allows one monitor per socket) passes
    ``monitor=False`` and hands the handshake events to :meth:`handle`, then calls :meth:`tick`.
    """

    def __init__(self, sock: zmq.Socket, endpoints: Iterable[str], *, what: str = "connection",
                 monitor: bool = True, first_s: float = 0.5, max_s: float = 30.0, log_interval_s: float = 60.0,
                 alarm=None, logger: logging.Logger | None = None):
        self.what = what
        self.retry = RefusalRetry(sock, list(endpoints), first_s=first_s, max_s=max_s)
        self.log_interval_s = log_interval_s
        self._log = logger or log
        self._alarm = alarm  # callable(line, level) for the alarm lines; default: this module's log
        self.refusals = 0
        self.alarms = 0
        self._count: dict[str, int] = {}  # endpoint -> refusals since it last got in
        self._last_line: dict[str, tuple[float, int]] = {}  # endpoint -> (time of its last line, refusals then)
        self.refused_now: dict[str, Refusal] = {}  # endpoints refused and not in again yet
        self._mon = sock.get_monitor_socket(HANDSHAKE_EVENTS) if monitor and self.retry.endpoints else None

    @property
    def reconnects(self) -> int:
        return self.retry.retries

    def _say(self, text: str, level: int = logging.WARNING) -> None:
        if self._alarm is not None:
            self._alarm(text, level)
        else:
            self._log.log(level, "%s", text)

    def handle(self, event: int, endpoint: str, value: int, now: float | None = None) -> Refusal | None:
        """One monitor event; returns the Refusal when it was a refused handshake of one of our
        endpoints (a reconnect is then scheduled)."""
        now = time.monotonic() if now is None else now
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.retry.connected(endpoint)
            n = self._count.pop(endpoint, 0)
            self._last_line.pop(endpoint, None)
            if self.refused_now.pop(endpoint, None) is not None or n:
                self._say(f"{self.what} to {endpoint}: handshake succeeded after {n} refusal(s); connected",
                          logging.INFO)
            return None
        described = describe_refusal(event, value)
        if described is None:
            return None
        reason, detail = described
        delay = self.retry.refused(endpoint, now)
        if delay is None:
            return None
        self.refusals += 1
        n = self._count[endpoint] = self._count.get(endpoint, 0) + 1
        last, n_then = self._last_line.get(endpoint, (-1e18, 0))
        logged = now - last >= self.log_interval_s
        if logged:
            hint = {"handshake_failed_auth": " (this client's key is not in the server's allow-list?)",
                    "handshake_failed_protocol": " (CURVE on one side only, or the wrong server key?)"}.get(reason, "")
            more = f"; {n - n_then - 1} more refusal(s) since the last line" if n - n_then > 1 else ""
            self._say(f"{self.what} to {endpoint} refused: {reason} {detail}{hint}; retrying in {delay:g} s "
                      f"(refusal {n}; back-off up to {self.retry.max_s:g} s{more})")
            self._last_line[endpoint] = (now, n)
            self.alarms += 1
        refusal = Refusal(endpoint, reason, detail, delay, n, logged)
        self.refused_now[endpoint] = refusal
        return refusal

    def tick(self, now: float | None = None) -> list[str]:
        """Reconnect the refused endpoints whose back-off is over; returns them."""
        done = self.retry.tick(time.monotonic() if now is None else now)
        for ep in done:  # debug: one line per attempt is what the alarm's rate limit is for
            self._log.debug("%s: reconnecting to %s after a refused handshake", self.what, ep)
        return done

    def poll(self, now: float | None = None) -> list[Refusal]:
        """Read the pending monitor events (never blocks), then reconnect what is due."""
        now = time.monotonic() if now is None else now
        out: list[Refusal] = []
        if self._mon is not None:
            from zmq.utils.monitor import parse_monitor_message

            while True:
                try:
                    frames = self._mon.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:  # the context is terminating
                    break
                try:
                    m = parse_monitor_message(frames)
                except (ValueError, KeyError, IndexError):
                    continue
                ep = m["endpoint"]
                ep = ep.decode("utf-8", "replace") if isinstance(ep, bytes) else str(ep)
                r = self.handle(int(m["event"]), ep, int(m["value"]), now)
                if r is not None:
                    out.append(r)
        self.tick(now)
        return out

    def status(self) -> str | None:
        """A short line for a status display while an endpoint is refused, else None."""
        if not self.refused_now:
            return None
        r = next(iter(self.refused_now.values()))
        more = f" (+{len(self.refused_now) - 1} more)" if len(self.refused_now) > 1 else ""
        return f"refused by {r.endpoint}: {r.reason} {r.detail}; retrying (refusal {r.refusals}){more}"

    def close(self) -> None:
        if self._mon is not None:
            self._mon.close(0)
            self._mon = None
