"""The AMI client: panoramisk's Manager for the socket, login and ping; our parser and table.

What panoramisk 1.4 leaves weak, and is wrapped here:
* reconnect uses a fixed delay -> exponential backoff with jitter, reset on login;
* ``Ping`` is sent but its answer never checked -> a dead socket is cut after
  ``ping_timeout`` seconds without a Pong (or any byte);
* closing from our side sets ``closed`` before the transport reports the loss, so the
  Manager would never reconnect -> we call the protocol's ``connection_lost`` ourselves;
* its parser rebuilds case-insensitive dicts per message and drops the stray CR/garbage
  handling we need -> ``AmiStreamParser`` and one event table {name: handler};
* the Manager is built inside the running loop, never at import time.

The operator directory behind the interface map can change while the listener runs:
given a ``directory`` source, a ``DirectoryWatch`` reloads it every
``directory_interval`` seconds and, rate-limited, as soon as an event names an
interface no operator claims (``refresh_operators()`` applies a directory directly).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from callrouter.ami.directory import DirectorySource, DirectoryStatus, DirectoryWatch
from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, AmiStreamParser, OnceLog
from callrouter.ami.presence import PresenceBook
from callrouter.ami.tracker import CallAnswered, CallTracker
from callrouter.domain.model import Operator
from callrouter.service.ports import CallRecord

log = logging.getLogger(__name__)

Handler = Callable[[AmiMessage, float], None]
_QS_PREFIX = "callrouter-queuestatus-"


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callrouter"
    secret: str = field(default="", repr=False)
    server_id: str = "default"
    # call: Dial*/Bridge*/Hangup/DeviceStateChange/transfers; agent: Queue*/Agent*;
    # system: Shutdown/FullyBooted. Add "dialplan" only to learn the decision from
    # VarSet (the FastAGI side can call ``expect()`` instead; dialplan triples volume).
    events: str = "call,agent,system"
    ping_interval: float = 5.0
    ping_timeout: float = 10.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    tick_interval: float = 0.25
    connect_timeout: float = 5.0
    # Operator directory reloads (with a ``directory`` source): every interval; on an
    # unknown interface at most once per miss interval; an interface a reload did not
    # find is asked about again (outside calls) only after the miss TTL.
    directory_interval: float = 30.0
    directory_miss_interval: float = 5.0
    directory_miss_ttl: float = 300.0
    directory_timeout: float = 10.0


@dataclass(slots=True)
class ListenerStatus:
    """For the health endpoint and metrics."""

    state: str = "down"  # down | connecting | connected | auth_failed | stopped
    connected_since: float | None = None
    last_event_at: float | None = None
    last_error: str | None = None
    reconnects: int = 0
    events: int = 0
    messages_by_event: dict[str, int] = field(default_factory=dict)
    directory_reloads: int = 0
    directory_failures: int = 0
    directory_loaded_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "connected_since": self.connected_since,
                "last_event_at": self.last_event_at, "last_error": self.last_error,
                "reconnects": self.reconnects, "events": self.events,
                "directory_reloads": self.directory_reloads,
                "directory_failures": self.directory_failures,
                "directory_loaded_at": self.directory_loaded_at}


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with our parser; responses still resolve panoramisk futures."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.parser: AmiStreamParser | None = None

    def data_received(self, data: bytes) -> None:
        if self.factory is None:
            # Bytes (the banner) can arrive before panoramisk's done-callback attached
            # the Manager to this protocol: hold them for a loop turn.
            self._early = getattr(self, "_early", b"") + data
            asyncio.get_running_loop().call_soon(self._drain_early)
            return
        listener: AmiListener = self.factory.listener
        if self.parser is None:
            self.parser = AmiStreamParser(listener.anomaly)
        now = time.time()
        listener.status.last_event_at = now
        for msg in self.parser.feed(data):
            aid = msg.headers.get("ActionID")
            if aid is not None and aid in self.responses:
                self.handle_message(Message(dict(msg.items())))
                continue
            if msg.name is None and not (aid and aid.startswith(_QS_PREFIX)):
                continue
            listener.dispatch(msg, now)
            if msg.name == "Shutdown":
                self.connection_lost(None)
                return

    def _drain_early(self) -> None:
        data, self._early = getattr(self, "_early", b""), b""
        if data and not self.closed:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.parser is not None:
            self.parser.reset()
        super().connection_lost(exc)


class _Manager(Manager):  # type: ignore[misc]
    pinger: asyncio.TimerHandle | None  # panoramisk's, set in __init__ and ping()

    def __init__(self, listener: AmiListener, **config: Any) -> None:
        super().__init__(**config)
        self.listener = listener
        self.reconnect_timeout = listener.settings.backoff_min  # panoramisk int()s it
        self.ping_interval = listener.settings.ping_interval
        self.ping_delay = listener.settings.ping_interval
        self.stopped = False

    def connect(self, run_forever: bool = False, on_startup: Any = None,
                on_shutdown: Any = None) -> Any:
        if self.stopped:
            return None
        self.listener.status.state = "connecting"
        return super().connect()

    def connection_made(self, f: Any) -> None:
        if self.stopped:
            with contextlib.suppress(Exception):
                f.result()[0].close()
            return
        if f.exception() is not None:
            self.listener.status.last_error = str(f.exception())
            self.reconnect_timeout = self.listener.next_backoff()
        super().connection_made(f)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc) if exc else "connection lost"
        self.listener.on_link_down(reason)
        if self.stopped:
            return
        self.reconnect_timeout = self.listener.next_backoff()
        # panoramisk's Manager.connection_lost, without its log lines: it says
        # "Connection lost" at ERROR for every loss (an announced shutdown is none) and
        # "Try to connect again in 0 second(s)" (its int() of our backoff).
        self._connected = False
        self.loop.call_soon(self.on_disconnect, self, exc)
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self.listener.log_link_lost(reason, self.reconnect_timeout)
        self.loop.call_later(self.reconnect_timeout, self.connect)

    def ping(self) -> None:
        if self.stopped or self.protocol is None or self.protocol.closed:
            return
        self.pinger = self.loop.call_later(self.ping_interval, self.ping)
        listener = self.listener
        now = time.time()
        sent = listener._ping_sent_at
        if sent is not None:
            if (listener.status.last_event_at or 0.0) > sent:
                listener._ping_sent_at = None  # bytes arrived: the socket is alive
            elif now - sent > listener.settings.ping_timeout:
                log.warning("AMI %s: no answer to Ping within %.1fs; reconnecting",
                            listener.settings.server_id, listener.settings.ping_timeout)
                listener.status.last_error = "ping timeout"
                self.protocol.connection_lost(None)
                return
            else:
                return
        fut = self.protocol.send({"Action": "Ping"})
        listener._ping_sent_at = now
        fut.add_done_callback(lambda _f: listener._pong())

    def login(self, future: Any) -> bool:
        ok = bool(super().login(future))
        if not ok:
            self.listener.status.state = "auth_failed"
            self.listener.status.last_error = "authentication failed"
            log.error("AMI %s: login as %r refused (secret not shown)",
                      self.listener.settings.server_id, self.listener.settings.username)
        return ok


class AmiListener:
    """One AMI connection to one Asterisk server, feeding a tracker and a presence book.

    ``on_record`` gets each call's final record and, before it, an ``in_progress`` record
    (no ``ended_at``) each time someone takes the call; ``on_answered`` the screen-pops
    and, for an operator who transferred a call away, the end of their part.
    """

    def __init__(
        self,
        settings: AmiSettings,
        operators: Mapping[str, Operator],
        *,
        on_record: Callable[[CallRecord], None],
        on_answered: Callable[[CallAnswered], None] | None = None,
        on_status: Callable[[ListenerStatus], None] | None = None,
        tracker_options: Mapping[str, Any] | None = None,
        directory: DirectorySource | None = None,
    ) -> None:
        self.settings = settings
        self.interfaces = InterfaceMap(operators)
        self.status = ListenerStatus()
        self.anomaly = OnceLog(log)
        self._on_record = on_record
        self._on_answered = on_answered or (lambda a: None)
        self._on_status = on_status or (lambda s: None)
        # Reloads the directory behind self.interfaces while running (None: never).
        self.directory: DirectoryWatch | None = None
        if directory is not None:
            self.directory = DirectoryWatch(
                directory, self.refresh_operators, self._knows,
                interval=settings.directory_interval,
                miss_interval=settings.directory_miss_interval,
                miss_ttl=settings.directory_miss_ttl, timeout=settings.directory_timeout,
                on_status=self._directory_status)
        self.presence = PresenceBook(self.interfaces, server_id=settings.server_id,
                                     on_unmapped=self._unmapped_member)
        self.tracker = CallTracker(self.interfaces, server_id=settings.server_id,
                                   on_record=self._record, on_answered=self._answered,
                                   on_progress=self._progress,
                                   on_unmapped=self._unmapped_call,
                                   hold_for_directory=self._resolving,
                                   **dict(tracker_options or {}))
        self.table = self._event_table()
        self._manager: _Manager | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._backoff = settings.backoff_min
        self._ping_sent_at: float | None = None
        self._qs_ids = itertools.count(1)
        self._qs_pending: str | None = None
        self._ever_connected = False
        # The Shutdown event of this connection (its Shutdown and Restart headers): the
        # link's end that follows was announced. Cleared at the next login.
        self._shutdown: tuple[str | None, str | None] | None = None
        self.logged_in: asyncio.Event | None = None  # built in start(), inside the loop
        self.snapshot_done: asyncio.Event | None = None

    # -- the event table: one place that says who handles what ---------------------------

    def _event_table(self) -> dict[str, Handler]:
        t, p = self.tracker, self.presence
        table: dict[str, Handler] = {
            "QueueCallerJoin": t.on_queue_caller_join,
            "QueueCallerLeave": t.on_queue_caller_leave,
            "QueueCallerAbandon": t.on_queue_caller_abandon,
            "AgentCalled": t.on_agent_called,
            "AgentRingNoAnswer": t.on_agent_ring_no_answer,
            "AgentConnect": t.on_agent_connect,
            "AgentComplete": t.on_agent_complete,
            "DialBegin": t.on_dial_begin,
            "DialEnd": t.on_dial_end,
            "BridgeEnter": t.on_bridge_enter,
            "BridgeLeave": t.on_bridge_leave,
            "Hangup": t.on_hangup,
            "BlindTransfer": t.on_blind_transfer,
            "AttendedTransfer": t.on_attended_transfer,
            "VarSet": t.on_var_set,
            "QueueMemberStatus": p.on_member_event,
            "QueueMemberPause": p.on_member_event,
            "QueueMemberAdded": p.on_member_event,
            "QueueMemberPenalty": p.on_member_event,
            "QueueMemberRinginuse": p.on_member_event,
            "QueueMemberRemoved": p.on_member_removed,
            "DeviceStateChange": p.on_device_state,
            "QueueMember": self._on_list_member,
            "QueueStatusComplete": self._on_queue_status_complete,
            "Shutdown": self._on_shutdown,
            "FullyBooted": self._on_fully_booted,
        }
        return table

    def dispatch(self, msg: AmiMessage, now: float) -> None:
        self.status.events += 1
        name = msg.name
        if name is None:  # the "EventList: start" response of our QueueStatus
            if msg.headers.get("ActionID") == self._qs_pending:
                if msg.headers.get("Response") == "Success":
                    self.presence.begin_snapshot()
                else:
                    self.anomaly("QueueStatus refused", msg.headers.get("Message") or "")
            return
        handler = self.table.get(name)
        if handler is not None:
            try:
                handler(msg, now)
            except Exception:  # a bug on one event must not kill the connection
                self.anomaly(f"handler for {name} failed", repr(msg.headers)[:200])
                log.debug("handler failure", exc_info=True)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.logged_in = asyncio.Event()
        self.snapshot_done = asyncio.Event()
        self._manager = _Manager(
            self, loop=loop, host=self.settings.host, port=self.settings.port,
            username=self.settings.username, secret=self.settings.secret,
            events=self.settings.events, protocol_factory=_Protocol,
            ping_delay=1, ping_interval=1, reconnect_timeout=1,
            on_login=self._on_login, on_connect=lambda m: None,
            on_disconnect=lambda m, exc: None, log=log)
        self._manager.connect()
        self._ticker = asyncio.create_task(self._tick(), name="ami-tick")
        if self.directory is not None:
            self.directory.start()

    async def stop(self) -> None:
        if self.directory is not None:
            await self.directory.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._manager is not None:
            self._manager.stopped = True
            self._manager.close()
        self.tracker.tick(time.time())
        self.tracker.release_held()
        self.status.state = "stopped"
        self._on_status(self.status)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        assert self.snapshot_done is not None, "start() first"
        await asyncio.wait_for(self.snapshot_done.wait(), timeout)

    def expect(self, uniqueid: str, decision_id: str | None,
               target_operator_id: str | None) -> None:
        self.tracker.expect(uniqueid, decision_id, target_operator_id, time.time())

    # -- the operator directory ------------------------------------------------------------

    def refresh_operators(self, operators: Mapping[str, Operator]) -> bool:
        """Use this operator directory from now on (operators added, removed, re-bound,
        deactivated); presence is recomputed and a live call whose screen-pop named no
        operator gets one. True if anything changed."""
        if not self.interfaces.replace(operators):
            return False
        log.info("AMI %s: operator directory changed (%d operators)",
                 self.settings.server_id, len(self.interfaces.operators))
        self.presence.directory_changed(time.time())
        self.tracker.directory_changed()
        return True

    def _directory_status(self, d: DirectoryStatus) -> None:
        """After every reload attempt, successful or not."""
        self.status.directory_reloads = d.reloads
        self.status.directory_failures = d.failures
        self.status.directory_loaded_at = d.loaded_at
        self.tracker.release_held()

    def _resolving(self, interface: str) -> bool:
        return self.directory is not None and self.directory.resolving(interface)

    def _knows(self, key: str) -> bool:
        return self.interfaces.operator_for_interface(key) is not None

    def _unmapped_member(self, interface: str) -> None:
        if self.directory is not None:
            self.directory.unknown(interface)

    def _unmapped_call(self, interface: str) -> None:
        if self.directory is not None:
            self.directory.unknown(interface, urgent=True)

    def next_backoff(self) -> float:
        delay = self._backoff
        self._backoff = min(self.settings.backoff_max, self._backoff * 2)
        return delay * random.uniform(0.8, 1.2)

    # -- link events -------------------------------------------------------------------

    def _on_login(self, manager: Any) -> None:
        self._backoff = self.settings.backoff_min
        self._ping_sent_at = None
        self._shutdown = None
        if self._ever_connected:
            self.status.reconnects += 1
        self._ever_connected = True
        self.status.state = "connected"
        self.status.connected_since = time.time()
        self.status.last_error = None
        log.info("AMI %s: logged in to %s:%d", self.settings.server_id,
                 self.settings.host, self.settings.port)
        if self.logged_in is not None:
            self.logged_in.set()
        self._send_queue_status()
        self._on_status(self.status)

    def _send_queue_status(self) -> None:
        # Sent raw with our own ActionID, so the list events reach our table instead of
        # piling up in a panoramisk future.
        assert self._manager is not None and self._manager.protocol is not None
        self._qs_pending = f"{_QS_PREFIX}{next(self._qs_ids)}"
        self._manager.protocol.transport.write(
            f"Action: QueueStatus\r\nActionID: {self._qs_pending}\r\n\r\n".encode())

    def _on_list_member(self, msg: AmiMessage, now: float) -> None:
        if msg.headers.get("ActionID") == self._qs_pending:
            self.presence.on_list_member(msg, now)

    def _on_queue_status_complete(self, msg: AmiMessage, now: float) -> None:
        if msg.headers.get("ActionID") == self._qs_pending:
            self._qs_pending = None
            self.presence.end_snapshot(now)
            if self.snapshot_done is not None:
                self.snapshot_done.set()

    def _on_shutdown(self, msg: AmiMessage, now: float) -> None:
        how, restart = msg.headers.get("Shutdown"), msg.headers.get("Restart")
        ending = sum(1 for call in self.tracker.calls.values() if call.adopted)
        log.warning("AMI %s: Asterisk announced its shutdown (%s, restart=%s); %d call(s) "
                    "it had are over; closing the link and reconnecting until it is back",
                    self.settings.server_id, how, restart, ending)
        self._shutdown = (how, restart)
        self.status.last_error = "asterisk shutdown"
        self.tracker.flush_all(now)

    def _on_fully_booted(self, msg: AmiMessage, now: float) -> None:
        pass  # the QueueStatus sent at login covers a restarted Asterisk as well

    def on_link_down(self, reason: str) -> None:
        if self.status.state in ("stopped",):
            return
        was = self.status.state
        self.status.state = "down" if was != "connecting" else was
        self.status.connected_since = None
        self.status.last_error = self.status.last_error or reason
        self.presence.link_down(time.time())
        if self.logged_in is not None:
            self.logged_in.clear()
        if self.snapshot_done is not None:
            self.snapshot_done.clear()
        self._qs_pending = None
        self._on_status(self.status)

    def log_link_lost(self, reason: str, retry_in: float) -> None:
        """The link ended and a reconnect is scheduled in ``retry_in`` seconds. After an
        announced shutdown (the ``Shutdown`` event) that is expected: WARNING once for
        the shutdown, INFO here. An unannounced loss is an ERROR."""
        sid = self.settings.server_id
        if self._shutdown is not None:
            how, restart = self._shutdown
            log.info("AMI %s: link closed after Asterisk's announced shutdown (%s, "
                     "restart=%s); reconnecting in %.1fs, retrying with backoff up to %gs "
                     "until it is back", sid, how, restart, retry_in,
                     self.settings.backoff_max)
        else:
            detail = self.status.last_error or reason
            log.error("AMI %s: connection to Asterisk lost%s without a Shutdown event; "
                      "reconnecting in %.1fs", sid,
                      "" if detail == "connection lost" else f" ({detail})", retry_in)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_interval)
            self.tracker.tick(time.time())

    # -- outputs -----------------------------------------------------------------------

    def _record(self, record: CallRecord) -> None:
        now = time.time()
        self.presence.call_ended(record.operator_id, record.uniqueid, now)
        self.presence.call_ended(record.transferred_from, record.uniqueid, now)
        self._on_record(record)

    def _progress(self, record: CallRecord) -> None:
        # The live call's record goes the same way as the final one (the call row learns who
        # answered while the call lasts); its outcome stays in_progress and it has no end.
        self._on_record(record)

    def _answered(self, answered: CallAnswered) -> None:
        now = time.time()
        self.presence.call_ended(answered.transferred_from, answered.uniqueid, now)
        self.presence.call_started(answered.operator_id, answered.uniqueid, now)
        try:
            self._on_answered(answered)
        except Exception:
            log.exception("answered hook failed")

    def _pong(self) -> None:
        self._ping_sent_at = None
