"""The simulator against the real Asterisk 22 traces in ../shared/asterisk."""

from __future__ import annotations

import asyncio

import pytest

from callrouter.fastagi.protocol import AgiChannel, AgiProtocolError, parse_reply_line
from callrouter.simulator.agi import ChannelModel, environment_block, parse_agi_args
from callrouter.simulator.traces import env_lines, exchanges
from tests import traces

TRACES = traces.AGI
needs_traces = traces.skip_unless(TRACES)


@needs_traces
def test_env_block_matches_asterisk_bytes() -> None:
    raw = (TRACES / "agi-basic.raw").read_bytes()
    real = env_lines(raw)
    threadid = int(dict(real)["agi_threadid"])
    ours = b"".join(environment_block(
        script="agi-basic", channel="Local/s@agi-basic-00000000;2", uniqueid="1795425059.1",
        caller="5551234", caller_name="Alice Example", context="agi-basic", threadid=threadid,
    ))
    assert ours == raw.split(b"\n\n", 1)[0] + b"\n\n"


@needs_traces
def test_env_block_withheld_and_args_match() -> None:
    raw = (TRACES / "agi-withheld-nocid.raw").read_bytes()
    real = dict(env_lines(raw))
    ours = dict(env_lines(b"".join(environment_block(caller=None, callingpres=67))))
    for key in ("agi_callerid", "agi_calleridname", "agi_callingpres", "agi_dnid"):
        assert ours[key] == real[key]
    args = dict(env_lines((TRACES / "agi-args-and-dnid.raw").read_bytes()))
    assert args["agi_arg_4"] == "" and args["agi_arg_5"] == "  padded  "
    block = b"".join(environment_block(args=["first arg", "", "  padded  "]))
    assert b"agi_arg_2: \n" in block and b"agi_arg_3:   padded  \n" in block


@needs_traces
@pytest.mark.parametrize("name", ["agi-basic", "agi-errors"])
def test_replaying_server_commands_gives_asterisk_replies(name: str) -> None:
    number = 0 if name == "agi-basic" else 1
    model = ChannelModel(channel=f"Local/s@{name}-0000000{number};2", caller="5551234",
                         caller_name="Alice Example")
    for command, reply in exchanges(TRACES / f"{name}.transcript"):
        assert model.answer(command[:-1]) == reply, command


@needs_traces
def test_dead_channel_replies_match_hangup_trace() -> None:
    model = ChannelModel(channel="Local/s@agi-hangup-default-00000003;2", caller="5551234",
                         dead=True)
    for command, reply in exchanges(TRACES / "agi-hangup-default.transcript"):
        assert model.answer(command[:-1]) == reply, command


def test_parse_args_like_res_agi() -> None:
    assert parse_agi_args('SET VARIABLE X "value with spaces"') == [
        "SET", "VARIABLE", "X", "value with spaces"]
    assert parse_agi_args('SET VARIABLE Y "unterminated value') == [
        "SET", "VARIABLE", "Y", "unterminated value"]
    assert parse_agi_args(r'SET VARIABLE Z "a \"b\" c\\d"') == ["SET", "VARIABLE", "Z",
                                                                 'a "b" c\\d']


async def _channel_fed(data: bytes) -> AgiChannel:
    reader = asyncio.StreamReader()
    reader.feed_data(data)

    class Sink:
        def write(self, data: bytes) -> None: ...
        async def drain(self) -> None: ...
        def close(self) -> None: ...

    return AgiChannel(reader, Sink(), command_timeout=0.5)


async def test_channel_reads_520_block_containing_200() -> None:
    from callrouter.simulator.agi import R_520_GET_VARIABLE
    ch = await _channel_fed(R_520_GET_VARIABLE + b"200 result=0\n")
    reply = await ch.command("GET VARIABLE")
    assert reply.code == 520 and "200 result=1 (testvariable)" in reply.extra
    assert (await ch.command("NOOP")).result == 0


async def test_channel_treats_hangup_as_flag_not_reply() -> None:
    ch = await _channel_fed(b"HANGUP\n200 result=1 (x)\n")
    reply = await ch.command("GET VARIABLE X")
    assert ch.hungup and reply.result == 1 and reply.data == "x"


async def test_env_timeout_and_size_limits() -> None:
    ch = await _channel_fed(b"agi_network: yes\n")
    with pytest.raises(AgiProtocolError):
        await ch.read_environment(timeout=0.1)
    ch = await _channel_fed(b"agi_x: " + b"A" * 2000 + b"\n\n")
    with pytest.raises(AgiProtocolError):
        await ch.read_environment(max_line=1024)
    ch = await _channel_fed(b"GET / HTTP/1.1\n\n")
    with pytest.raises(AgiProtocolError):
        await ch.read_environment()


def test_reply_parsing() -> None:
    r = parse_reply_line("200 result=1 (Local/s@agi-basic-00000000;2)")
    assert r.result == 1 and r.data == "Local/s@agi-basic-00000000;2"
    r = parse_reply_line("200 result=0 endpos=1234")
    assert r.result == 0 and r.data is None and r.extra == "endpos=1234"
    assert parse_reply_line("200 result=1 ()").data == ""
    assert parse_reply_line("510 Invalid or unknown command").code == 510
