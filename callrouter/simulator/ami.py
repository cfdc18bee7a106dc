"""A fake Asterisk AMI server speaking the exact bytes of the recorded Asterisk 22 sessions.

It answers Login (a wrong secret gets ``Authentication failed`` and a closed socket),
Ping, QueueStatus (an EventList built from a member table, field names as Asterisk
spells them), Logoff; replays the Asterisk->client events of a recorded ``.session``;
emits synthetic queue calls for ``callrouter demo``; and misbehaves on request: cut
mid-event, Shutdown then EOF, stop answering pings, restart on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from callrouter.simulator.ami_traces import asterisk_events

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


@dataclass(frozen=True, slots=True)
class FakeMember:
    queue: str
    interface: str
    name: str
    status: int = 1
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    state_interface: str | None = None
    membership: str = "static"


def _msg(*pairs: tuple[str, object]) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode()


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.logged_in = False
        self.actions: list[dict[str, str]] = []


class FakeAmiServer:
    def __init__(self, *, members: Sequence[FakeMember] = (), username: str = "callrouter",
                 secret: str = "secret", host: str = "127.0.0.1", port: int = 0,
                 login_failure_delay: float = 0.0) -> None:
        self.members = list(members)
        self.username, self.secret = username, secret
        self.host, self.port = host, port
        self.login_failure_delay = login_failure_delay
        self.answer_pings = True
        self.clients: list[_Client] = []
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._login_event = asyncio.Event()
        self._ids = itertools.count(1)
        self._chan = itertools.count(0x100)
        self._boot = time.time()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._boot = time.time()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.clients):
            c.writer.transport.abort()
        self.clients.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def restart(self, members: Sequence[FakeMember] | None = None) -> None:
        """Asterisk restarted: same port, maybe a different member table."""
        await self.stop()
        if members is not None:
            self.members = list(members)
        await self.start()

    async def wait_login(self, timeout: float = 5.0, count: int | None = None) -> None:
        target = count if count is not None else self.logins + 1
        deadline = time.monotonic() + timeout
        while self.logins < target:
            if time.monotonic() > deadline:
                raise TimeoutError("no AMI login")
            await asyncio.sleep(0.01)

    # -- protocol ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(reader, writer)
        self.clients.append(client)
        try:
            writer.write(BANNER)  # one line, no blank line after it
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                action: dict[str, str] = {}
                for line in raw.decode(errors="replace").split("\r\n"):
                    k, sep, v = line.partition(": ")
                    if sep:
                        action[k] = v
                client.actions.append(action)
                self.actions.append(action)
                if not await self._answer(client, action):
                    break
        finally:
            if client in self.clients:
                self.clients.remove(client)
            writer.transport.abort()

    async def _answer(self, client: _Client, a: dict[str, str]) -> bool:
        name = a.get("Action", "").lower()
        aid = [("ActionID", a["ActionID"])] if "ActionID" in a else []
        w = client.writer
        if name == "login":
            if a.get("Username") == self.username and a.get("Secret") == self.secret:
                w.write(_msg(("Response", "Success"), *aid,
                             ("Message", "Authentication accepted")))
                up = int(time.time() - self._boot)
                w.write(_msg(("Event", "FullyBooted"), ("Privilege", "system,all"),
                             ("Uptime", up), ("LastReload", up), ("Status", "Fully Booted")))
                client.logged_in = True
                self.logins += 1
                return True
            await asyncio.sleep(self.login_failure_delay)
            w.write(_msg(("Response", "Error"), *aid, ("Message", "Authentication failed")))
            await w.drain()
            return False
        if not client.logged_in:
            w.write(_msg(("Response", "Error"), *aid, ("Message", "Permission denied")))
            return True
        if name == "ping":
            if self.answer_pings:
                w.write(_msg(("Response", "Success"), *aid, ("Ping", "Pong"),
                             ("Timestamp", f"{time.time():.6f}")))
        elif name == "queuestatus":
            w.write(self.queue_status_bytes(a.get("ActionID"), a.get("Queue")))
        elif name == "logoff":
            w.write(_msg(("Response", "Goodbye"), *aid, ("Message", "Thanks for all the fish.")))
            await w.drain()
            return False
        else:
            w.write(_msg(("Response", "Error"), *aid,
                         ("Message", f"Invalid/unknown command: {a.get('Action')}. "
                                     "Use Action: ListCommands to show available commands.")))
        return True

    def queue_status_bytes(self, action_id: str | None, queue: str | None = None) -> bytes:
        aid = [("ActionID", action_id)] if action_id else []
        out = [_msg(("Response", "Success"), *aid, ("EventList", "start"),
                    ("Message", "Queue status will follow"))]
        members = [m for m in self.members if queue in (None, "", m.queue)]
        queues = sorted({m.queue for m in members})
        for q in queues:
            out.append(_msg(("Event", "QueueParams"), ("Queue", q), ("Max", 0),
                            ("Strategy", "linear"), ("Calls", 0), ("Holdtime", 0),
                            ("TalkTime", 0), ("Completed", 0), ("Abandoned", 0),
                            ("ServiceLevel", 0), ("ServicelevelPerf", "0.0"),
                            ("ServicelevelPerf2", "0.0"), ("Weight", 0), *aid))
            for m in members:
                if m.queue != q:
                    continue
                # The list event says Name/Location where live events say MemberName/Interface.
                out.append(_msg(
                    ("Event", "QueueMember"), ("Queue", q), ("Name", m.name),
                    ("Location", m.interface),
                    ("StateInterface", m.state_interface or m.interface),
                    ("Membership", m.membership), ("Penalty", 0), ("CallsTaken", 0),
                    ("LastCall", 0), ("LastPause", 0), ("LoginTime", int(self._boot)),
                    ("InCall", int(m.in_call)), ("Status", m.status),
                    ("Paused", int(m.paused)), ("PausedReason", m.paused_reason),
                    ("Wrapuptime", 0), *aid))
        out.append(_msg(("Event", "QueueStatusComplete"), *aid, ("EventList", "Complete"),
                        ("ListItems", len(queues) + len(members))))
        return b"".join(out)

    # -- pushing events -------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        for c in list(self.clients):
            if c.logged_in:
                c.writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await c.writer.drain()

    async def replay(self, session: Path | str | Iterable[bytes], *,
                     close_on_shutdown: bool = True) -> int:
        """Send the Asterisk->client events of a recorded session; returns their count."""
        raws = ([m.raw for m in asterisk_events(session)]
                if isinstance(session, (str, Path)) else list(session))
        for raw in raws:
            await self.send(raw)
            if close_on_shutdown and raw.startswith(b"Event: Shutdown\r\n"):
                await asyncio.sleep(0.02)  # Asterisk closes ~24 ms after the event
                await self.drop_clients()
        return len(raws)

    async def cut_mid_event(self, raw: bytes | None = None) -> None:
        """Send half an event, then drop the TCP connection."""
        raw = raw or _msg(("Event", "QueueMemberStatus"), ("Privilege", "agent,all"),
                          ("Queue", "support-q"), ("MemberName", "Operator One"),
                          ("Interface", "Local/op1@operators/n"), ("Status", "2"))
        await self.send(raw[: len(raw) // 2])
        await self.drop_clients()

    async def shutdown(self, restart: bool = True) -> None:
        await self.send(_msg(("Event", "Shutdown"), ("Privilege", "system,all"),
                             ("Timestamp", f"{time.time():.6f}"), ("Shutdown", "Cleanly"),
                             ("Restart", "True" if restart else "False")))
        await asyncio.sleep(0.02)
        await self.drop_clients()

    async def drop_clients(self) -> None:
        for c in list(self.clients):
            c.writer.transport.abort()
        self.clients.clear()

    async def emit_member_status(self, interface: str, **changes: object) -> None:
        """Change a member (in every queue it is in) and send what Asterisk sends for it:
        ``QueueMemberPause`` when ``paused`` changes, else ``QueueMemberStatus``."""
        self.set_member(interface, **changes)
        for m in self.members:
            if m.interface != interface:
                continue
            event = "QueueMemberPause" if "paused" in changes else "QueueMemberStatus"
            await self.send(_msg(
                ("Event", event), ("Privilege", "agent,all"), ("Timestamp", f"{time.time():.6f}"),
                ("Queue", m.queue), ("MemberName", m.name), ("Interface", m.interface),
                ("StateInterface", m.state_interface or m.interface),
                ("Membership", m.membership), ("Penalty", 0), ("CallsTaken", 0),
                ("LastCall", 0), ("LastPause", 0), ("LoginTime", int(self._boot)),
                ("InCall", int(m.in_call)), ("Status", m.status), ("Paused", int(m.paused)),
                ("PausedReason", m.paused_reason), ("Ringinuse", 0), ("Wrapuptime", 0),
            ))

    def set_member(self, interface: str, **changes: object) -> None:
        self.members = [replace(m, **changes) if m.interface == interface else m  # type: ignore[arg-type]
                        for m in self.members]

    async def emit_queue_call(
        self, caller: str, queue: str, operator_interface: str, talk_seconds: float,
        *, caller_name: str = "Caller", hold_seconds: float = 1.0, reason: str = "caller",
        decision_id: str | None = None, target: str | None = None,
        member_name: str | None = None, time_scale: float = 0.0,
        uniqueid: str | None = None,
    ) -> str:
        """One queue call with the events, field order and timing of the real traces.

        ``time_scale`` = 1 waits in real time; 0 (tests) only advances the Timestamps.
        Returns the caller channel's uniqueid.
        """
        n = next(self._chan)
        base = time.time()
        uid, m_uid = uniqueid or f"{base:.0f}.{n}", f"{base:.0f}.{n}1"
        chan = f"Local/s@queue-entry-{n:08x};2"
        tech = operator_interface.rsplit("/n", 1)[0] if operator_interface.endswith("/n") \
            else operator_interface
        m_chan = f"{tech}-{n:08x};1"
        name = member_name or operator_interface
        clock = [base]

        def snap(prefix: str, ch: str, u: str, num: str, nm: str, state: str = "6",
                 desc: str = "Up") -> list[tuple[str, object]]:
            return [(f"{prefix}Channel", ch), (f"{prefix}ChannelState", state),
                    (f"{prefix}ChannelStateDesc", desc), (f"{prefix}CallerIDNum", num),
                    (f"{prefix}CallerIDName", nm), (f"{prefix}ConnectedLineNum", "<unknown>"),
                    (f"{prefix}ConnectedLineName", "<unknown>"), (f"{prefix}Language", "en"),
                    (f"{prefix}AccountCode", ""), (f"{prefix}Context", "queue-entry"),
                    (f"{prefix}Exten", "s"), (f"{prefix}Priority", "2"),
                    (f"{prefix}Uniqueid", u), (f"{prefix}Linkedid", uid)]

        def ev(name_: str, priv: str, *rest: tuple[str, object]) -> bytes:
            return _msg(("Event", name_), ("Privilege", priv),
                        ("Timestamp", f"{clock[0]:.6f}"), *rest)

        caller_s = snap("", chan, uid, caller, caller_name)
        member_s = snap("Dest", m_chan, m_uid, caller, caller_name, "0", "Down")
        who = [("Queue", queue), ("Interface", operator_interface), ("MemberName", name)]

        async def wait(seconds: float) -> None:
            clock[0] += seconds
            if time_scale:
                await asyncio.sleep(seconds * time_scale)

        await self.send(ev("Newchannel", "call,all", *caller_s))
        if decision_id is not None:
            await self.send(ev("VarSet", "dialplan,all", *caller_s,
                               ("Variable", "CALLROUTER_DECISION"), ("Value", decision_id)))
        if target is not None:
            await self.send(ev("VarSet", "dialplan,all", *caller_s,
                               ("Variable", "CALLROUTER_TARGET"), ("Value", target)))
        await self.send(ev("QueueCallerJoin", "agent,all", *caller_s, ("Queue", queue),
                           ("Position", 1), ("Count", 1)))
        await self.send(ev("AgentCalled", "agent,all", *caller_s, *member_s, *who))
        await self.send(ev("DialBegin", "call,all", *caller_s, *member_s,
                           ("DialString", tech.split("/", 1)[-1] + "/n")))
        await wait(hold_seconds)
        await self.send(ev("DialEnd", "call,all", *caller_s, *member_s, ("DialStatus", "ANSWER")))
        await self.send(ev("QueueCallerLeave", "agent,all", *caller_s, ("Queue", queue),
                           ("Position", 1), ("Count", 0)))
        await self.send(ev("AgentConnect", "agent,all", *caller_s, *member_s, *who,
                           ("HoldTime", int(hold_seconds)), ("RingTime", int(hold_seconds))))
        await wait(talk_seconds)
        await self.send(ev("AgentComplete", "agent,all", *caller_s, *member_s, *who,
                           ("HoldTime", int(hold_seconds)), ("TalkTime", int(talk_seconds)),
                           ("Reason", reason)))
        await self.send(ev("Hangup", "call,all", *snap("", m_chan, m_uid, caller, caller_name),
                           ("Cause", 16), ("Cause-txt", "Normal Clearing")))
        await self.send(ev("Hangup", "call,all", *caller_s, ("Cause", 16),
                           ("Cause-txt", "Normal Clearing")))
        return uid
