"""Read the shipped Asterisk files the way Asterisk 22 does, and run the dialplan.

This is not Asterisk. It is a small model of exactly the pieces the shipped files use,
each written after the Asterisk 22.10.1 source it names, so that the tests can check what
would break on a real Asterisk without one:

* config files: comments, categories, templates, ``#include`` (main/config.c);
* ``exten =>`` / ``same =>``, ``n``, labels, application and data (pbx/pbx_config.c);
* ``${...}`` / ``$[...]`` substitution (main/pbx_variables.c), the expression language
  (main/ast_expr2.y) for the operators used here, and application argument splitting
  (main/app.c, __ast_app_separate_args);
* the applications and functions the context calls, with the return codes and channel
  variables their sources give (cited at each one). Channel audio is reduced to three
  flags: ringback indicated, early media (183) sent, music on hold playing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIALPLAN = ROOT / "dialplan" / "callrouter-inbound.conf"
QUEUES = ROOT / "dialplan" / "queues.conf"
SAMPLE = ROOT / "asterisk.conf.sample"
CONTEXT = "callrouter-inbound"


# --------------------------------------------------------------------------- config files


@dataclass
class Category:
    name: str
    lineno: int
    template: bool = False
    inherits: tuple[str, ...] = ()
    items: list[tuple[str, str, int]] = field(default_factory=list)  # key, value, line


@dataclass
class Config:
    categories: list[Category]
    includes: list[tuple[str, int]]  # (#include argument, line)

    def get(self, name: str) -> list[Category]:
        return [c for c in self.categories if c.name == name]


def strip_comment(raw: str) -> str:
    """main/config.c: ';' starts a comment unless written '\\;' (the backslash goes)."""
    out: list[str] = []
    for ch in raw.rstrip("\n"):
        if ch == ";":
            if out and out[-1] == "\\":
                out[-1] = ";"
                continue
            break
        out.append(ch)
    return "".join(out).strip()


_CATEGORY = re.compile(r"\[([^\]]+)\](?:\(([^)]*)\))?")


def parse_config(text: str) -> Config:
    cats: list[Category] = []
    includes: list[tuple[str, int]] = []
    current: Category | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw)
        if not line:
            continue
        if line.startswith("["):
            m = _CATEGORY.fullmatch(line)
            if not m:
                raise ValueError(f"line {lineno}: bad category {line!r}")
            opts = [o.strip() for o in (m.group(2) or "").split(",") if o.strip()]
            current = Category(
                m.group(1), lineno, template="!" in opts,
                inherits=tuple(o for o in opts if o != "!"),
            )
            cats.append(current)
        elif line.startswith("#"):
            directive, _, arg = line[1:].partition(" ")
            if directive.lower() in ("include", "tryinclude"):
                includes.append((arg.strip().strip('"<>'), lineno))
        else:
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"line {lineno}: no '=' in {line!r}")
            if value.startswith(">"):  # "key => value" is "key = value"
                value = value[1:]
            if current is None:
                raise ValueError(f"line {lineno}: {key.strip()} outside a category")
            current.items.append((key.strip(), value.strip(), lineno))
    return Config(cats, includes)


def sample_sections() -> dict[str, str]:
    """asterisk.conf.sample holds excerpts of several files under '; ---- NAME' rulers."""
    sections: dict[str, list[str]] = {}
    name = "preamble"
    for raw in SAMPLE.read_text().splitlines():
        m = re.fullmatch(r"; -{8,} (\S+)", raw.strip())
        if m:
            name = m.group(1)
            continue
        sections.setdefault(name, []).append(raw)
    return {k: "\n".join(v) + "\n" for k, v in sections.items()}


# --------------------------------------------------------------------------- the dialplan


@dataclass(frozen=True)
class Prio:
    context: str
    exten: str
    number: int
    label: str | None
    app: str
    data: str
    lineno: int
    raw: str  # the application text as written (after the priority)


@dataclass
class Dialplan:
    prios: dict[tuple[str, str, int], Prio]
    errors: list[str]

    def extens(self, context: str) -> set[str]:
        return {e for (c, e, _) in self.prios if c == context}

    def find_label(self, context: str, exten: str, label: str) -> int | None:
        for (c, e, n), p in self.prios.items():
            if c == context and e == exten and p.label == label:
                return n
        return None


def parse_dialplan(config: Config) -> Dialplan:
    """pbx/pbx_config.c, pbx_load_config(): exten/same lines into priorities."""
    prios: dict[tuple[str, str, int], Prio] = {}
    errors: list[str] = []
    for cat in config.categories:
        if cat.name.lower() in ("general", "globals"):
            continue
        lastext = ""
        lastpri = -2  # per context, as in pbx_config.c
        for key, value, lineno in cat.items:
            if key.lower().startswith("same"):
                if not lastext:
                    errors.append(f"line {lineno}: 'same' with no previous exten in {cat.name}")
                    continue
                exten, rest = lastext, value
            elif key.lower() == "exten":
                exten, _, rest = value.partition(",")
                exten = exten.strip()
                lastext = exten
            else:
                continue
            pri, _, appl = rest.partition(",")
            pri = pri.strip()
            label = None
            if "(" in pri:
                pri, _, label = pri.partition("(")
                if not label.endswith(")"):
                    errors.append(f"line {lineno}: label missing trailing ')'")
                    continue
                label = label[:-1]
            if pri in ("n", "next"):
                if lastpri == -2:
                    errors.append(f"line {lineno}: 'n' on the first entry")
                    continue
                number = lastpri + 1
            elif pri in ("s", "same"):
                number = lastpri
            elif pri.isdigit() and int(pri) > 0:
                number = int(pri)
            else:
                errors.append(f"line {lineno}: invalid priority {pri!r}")
                continue
            lastpri = number
            if "(" in appl:
                app, _, data = appl.partition("(")
                if ")" not in data:
                    errors.append(f"line {lineno}: no closing parenthesis")
                    continue
                end = data.rindex(")")
                if data[end + 1 :].strip():
                    errors.append(f"line {lineno}: text after the last ')': {data[end + 1:]!r}")
                data = data[:end]
            else:
                app, data = appl, ""
            k = (cat.name, exten, number)
            if k in prios:
                errors.append(f"line {lineno}: priority {number} of {exten} defined twice")
                continue
            if label is not None and any(
                p.label == label for (c, e, _), p in prios.items() if (c, e) == (cat.name, exten)
            ):
                errors.append(f"line {lineno}: label {label} of {exten} defined twice")
            prios[k] = Prio(cat.name, exten, number, label, app.strip(), data, lineno,
                            appl.strip())
    return Dialplan(prios, errors)


def load_dialplan() -> Dialplan:
    return parse_dialplan(parse_config(DIALPLAN.read_text()))


def globals_from_sample() -> dict[str, str]:
    ext = parse_config(sample_sections()["extensions.conf"])
    return {k: v for cat in ext.get("globals") for k, v, _ in cat.items}


def queue_names() -> set[str]:
    conf = parse_config(QUEUES.read_text())
    return {c.name for c in conf.categories if c.name != "general" and not c.template}


# --------------------------------------------------------------------------- substitution


class Unbalanced(ValueError):
    pass


def scan_end(s: str, start: int) -> int:
    """main/pbx_variables.c: the index after the '}' or ']' closing the '${' / '$[' at start.

    Only the bracket kind that was opened is counted, as Asterisk does."""
    open_ = s[start + 1]
    close = "}" if open_ == "{" else "]"
    depth = 1
    j = start + 2
    while depth and j < len(s):
        if s[j] == "$" and j + 1 < len(s) and s[j + 1] == open_:
            depth += 1
            j += 2
            continue
        if s[j] == open_:
            depth += 1
        elif s[j] == close:
            depth -= 1
        j += 1
    if depth:
        raise Unbalanced(f"missing {close!r} in {s[start:]!r}")
    return j


def substitutions(s: str) -> Iterable[tuple[str, str]]:
    """The top-level ('{' or '[', inner text) substitutions of s, in order."""
    i = 0
    while True:
        nv, ne = s.find("${", i), s.find("$[", i)
        if nv < 0 and ne < 0:
            return
        start = nv if ne < 0 or (0 <= nv < ne) else ne
        end = scan_end(s, start)
        yield s[start + 1], s[start + 2 : end - 1]
        i = end


def all_substitutions(s: str) -> Iterable[tuple[str, str]]:
    for kind, inner in substitutions(s):
        yield kind, inner
        yield from all_substitutions(inner)


def separate_args(buf: str, delim: str, remove_chars: bool, arraylen: int) -> list[str]:
    """main/app.c, __ast_app_separate_args(): split on delim outside () [] and quotes."""
    out: list[str] = []
    paren = bracket = 0
    quote = False
    scan = 0
    ended_on_delim = False
    while scan < len(buf) and len(out) < arraylen - 1:
        piece: list[str] = []
        ended_on_delim = False
        while scan < len(buf):
            c = buf[scan]
            if c == "(":
                paren += 1
            elif c == ")":
                paren = max(paren - 1, 0)
            elif c == "[":
                bracket += 1
            elif c == "]":
                bracket = max(bracket - 1, 0)
            elif c == '"' and delim != '"':
                quote = not quote
                if remove_chars:
                    scan += 1
                    continue
            elif c == "\\":
                if not remove_chars:
                    piece.append(c)
                if scan + 1 < len(buf):
                    piece.append(buf[scan + 1])
                scan += 2
                continue
            elif c == delim and not paren and not quote and not bracket:
                scan += 1
                ended_on_delim = True
                break
            piece.append(c)
            scan += 1
        out.append("".join(piece))
    if scan < len(buf) or ended_on_delim:
        out.append(buf[scan:])
    return out


def checkcondition(value: str) -> bool:
    """main/pbx.c, pbx_checkcondition(): empty false, a number its value, a string true."""
    if not value:
        return False
    m = re.match(r"\s*[+-]?\d+", value)
    return int(m.group(0)) != 0 if m else True


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(r'\s*("[^"]*"|>=|<=|!=|==|=~|[|&=<>+\-*/%()!]|[^\s|&=<>+\-*/%()!"]+)')


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def expr(text: str) -> str:
    """main/ast_expr2.y for | & = != < > <= >= + - (quoted strings keep their quotes, as the
    lexer keeps them; a syntax error gives "0", as ast_expr() does)."""
    toks: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return "0"
        toks.append(m.group(1))
        pos = m.end()
    i = 0

    def peek() -> str | None:
        return toks[i] if i < len(toks) else None

    def take() -> str:
        nonlocal i
        i += 1
        return toks[i - 1]

    def atom() -> str:
        t = take() if peek() is not None else None
        if t is None or t in "|&=<>+*/%)!":
            raise SyntaxError(text)
        if t == "(":
            v = orr()
            if take() != ")":
                raise SyntaxError(text)
            return v
        if t == "-":
            n = _num(atom())
            if n is None:
                raise SyntaxError(text)
            return _fmt(-n)
        return t

    def additive() -> str:
        v = atom()
        while peek() in ("+", "-"):
            op = take()
            a, b = _num(v), _num(atom())
            if a is None or b is None:
                raise SyntaxError(text)
            v = _fmt(a + b if op == "+" else a - b)
        return v

    def compare() -> str:
        v = additive()
        while peek() in ("=", "==", "!=", "<", ">", "<=", ">="):
            op = take()
            w = additive()
            a, b = _num(v), _num(w)
            if a is not None and b is not None:
                r = {"=": a == b, "==": a == b, "!=": a != b, "<": a < b, ">": a > b,
                     "<=": a <= b, ">=": a >= b}[op]
            else:
                r = {"=": v == w, "==": v == w, "!=": v != w, "<": v < w, ">": v > w,
                     "<=": v <= w, ">=": v >= w}[op]
            v = "1" if r else "0"
        return v

    def zero(v: str) -> bool:
        return v in ("", "0", '""')

    def andd() -> str:
        v = compare()
        while peek() == "&":
            take()
            w = compare()
            v = "0" if zero(v) or zero(w) else v
        return v

    def orr() -> str:
        v = andd()
        while peek() == "|":
            take()
            w = andd()
            v = w if zero(v) else v
        return v

    try:
        v = orr()
        if peek() is not None:
            return "0"
    except (SyntaxError, IndexError):
        return "0"
    return v


# --------------------------------------------------------------------------- the channel


class CallEnded(Exception):
    pass


@dataclass
class Scenario:
    """What the world does when the dialplan asks. Defaults: a healthy daemon, a target
    that does not answer, queues that take the caller."""

    agistatus: str = "SUCCESS"  # or SILENT: the daemon accepts, then never answers
    daemon: dict[str, str] = field(default_factory=dict)  # what its EXEC MSet sets
    dialstatus: str = "NOANSWER"
    device_states: list[str] = field(default_factory=lambda: ["NOT_INUSE"])
    queue_status: dict[str, str] = field(default_factory=dict)  # queue -> QUEUESTATUS
    hangup_during: str | None = None  # an application name: the caller hangs up in it
    globals: dict[str, str] = field(default_factory=dict)  # overrides of the sample's
    channel: dict[str, str] = field(default_factory=dict)  # set by the trunk context
    trunk_timeout: float = 0.0  # TIMEOUT(absolute) the trunk context already set


@dataclass
class Outcome:
    kind: str  # answered | queued | caller-hangup | hangup | failed
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    dial_timeouts: list[float] = field(default_factory=list)
    dial_options: list[str] = field(default_factory=list)
    queues_tried: list[tuple[str, str]] = field(default_factory=list)  # (queue, QUEUE_PRIO)
    timeout_after_agi: float | None = None
    agi_scripts: list[str] = field(default_factory=list)  # AGI()'s first argument, each run


class Channel:
    def __init__(self, plan: Dialplan, scenario: Scenario, existing_queues: set[str],
                 globals_: dict[str, str]) -> None:
        self.plan = plan
        self.sc = scenario
        self.queues = existing_queues
        self.globals = {**globals_, **scenario.globals}
        self.vars: dict[str, str] = dict(scenario.channel)
        self.clock = 1_800_000_000.0
        self.timeout_at = self.clock + scenario.trunk_timeout if scenario.trunk_timeout else 0.0
        self.softhangup_timeout = False
        self.ringing = self.media = self.moh = self.answered = False
        self.states = list(scenario.device_states)
        self.out = Outcome("failed")
        self.ctx, self.exten, self.pri = CONTEXT, "s", 1
        self.jump: tuple[str, str, int] | None = None

    # -- variables --------------------------------------------------------------------
    def getvar(self, name: str) -> str:
        if name == "EPOCH":
            return str(int(self.clock))
        return self.vars.get(name, self.globals.get(name, ""))

    def setvar(self, name: str, value: str) -> None:
        """main/pbx_variables.c, pbx_builtin_setvar_helper(): '_'/'__' only mark inheritance;
        an empty value deletes; NAME(args) writes a function."""
        name = name.strip()
        if name.endswith(")") and "(" in name:
            fn, _, arg = name[:-1].partition("(")
            if fn == "TIMEOUT" and arg == "absolute":
                # funcs/func_timeout.c: sscanf("%ld%lf"); 0 or unparseable cancels
                m = re.match(r"\s*(\d+(?:\.\d*)?)", value)
                secs = float(m.group(1)) if m else 0.0
                self.timeout_at = self.clock + secs if secs > 0 else 0.0
                return
            raise AssertionError(f"write to unsupported function {name}")
        name = name.lstrip("_")
        if value:
            self.vars[name] = value
        else:
            self.vars.pop(name, None)

    def read(self, inner: str) -> str:
        """${inner}: a variable, ${VAR:offset[:length]}, or a function."""
        parens = 0
        for k, ch in enumerate(inner):
            if ch == "(":
                parens += 1
            elif ch == ")":
                parens -= 1
            elif ch == ":" and parens == 0:
                m = re.fullmatch(r"(-?\d+)(?::(-?\d+))?", inner[k + 1 :])
                if not m:
                    raise AssertionError(f"bad substring in ${{{inner}}}")
                value = self.read(inner[:k])
                off = int(m.group(1))
                off = max(len(value) + off, 0) if off < 0 else off
                value = value[off:]
                if m.group(2) is not None:  # a negative length drops from the end
                    value = value[: int(m.group(2))]
                return value
        if inner.endswith(")") and "(" in inner:
            fn, _, arg = inner[:-1].partition("(")
            return self.function(fn, arg)
        return self.getvar(inner)

    def function(self, fn: str, arg: str) -> str:
        if fn == "REGEX":  # funcs/func_strings.c, regex()
            args = separate_args(arg, '"', True, 3)
            if len(args) != 3:
                raise AssertionError(f"REGEX needs '\"re\" string': {arg!r}")
            text = args[2][1:] if args[2][:1] in (" ", "\t") else args[2]
            return "1" if re.search(args[1], text) else "0"
        if fn == "IF":  # funcs/func_logic.c, acf_if()
            cond, _, rest = arg.partition("?")
            yes, _, no = rest.partition(":")
            return yes.strip() if checkcondition(cond.strip()) else no.strip()
        if fn == "DEVICE_STATE":  # funcs/func_devstate.c
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return state
        if fn == "TIMEOUT" and arg == "absolute":  # funcs/func_timeout.c, timeout_read()
            return "0" if not self.timeout_at else f"{self.timeout_at - self.clock:.3f}"
        if fn == "CALLERID" and arg == "num":
            return "5551234"
        raise AssertionError(f"function {fn}({arg}) not modelled")

    def subst(self, s: str) -> str:
        out: list[str] = []
        i = 0
        while True:
            nv, ne = s.find("${", i), s.find("$[", i)
            if nv < 0 and ne < 0:
                out.append(s[i:])
                return "".join(out)
            start = nv if ne < 0 or (0 <= nv < ne) else ne
            end = scan_end(s, start)
            out.append(s[i:start])
            inner = self.subst(s[start + 2 : end - 1])
            out.append(self.read(inner) if s[start + 1] == "{" else expr(inner))
            i = end

    # -- control ----------------------------------------------------------------------
    def goto(self, target: str) -> int:
        """main/pbx.c, pbx_parseable_goto(): [[context,]exten,]priority|label."""
        parts = [p.strip() for p in target.split(",")]
        if len(parts) == 1:
            ctx, exten, pri = self.ctx, self.exten, parts[0]
        elif len(parts) == 2:
            ctx, exten, pri = self.ctx, parts[0], parts[1]
        else:
            ctx, exten, pri = parts[0], parts[1], parts[2]
        if pri.isdigit():
            number = int(pri)
        else:
            found = self.plan.find_label(ctx, exten, pri)
            if found is None:
                self.problem(f"Goto({target}): no label {pri} in {exten}")
                return -1
            number = found
        self.jump = (ctx, exten, number)
        return 0

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def end(self, kind: str, detail: str = "") -> None:
        self.out.kind, self.out.detail = kind, detail
        raise CallEnded

    def hangs_up_in(self, app: str) -> bool:
        return self.sc.hangup_during == app

    # -- applications -----------------------------------------------------------------
    def exec(self, app: str, data: str) -> int:
        handler: Callable[[str], int] | None = getattr(self, f"app_{app}", None)
        if handler is None:
            raise AssertionError(f"application {app} not modelled")
        self.out.trace.append(f"{app}({data})")
        return handler(data)

    def app_NoOp(self, data: str) -> int:
        return 0

    def app_Log(self, data: str) -> int:  # apps/app_verbose.c, log_exec()
        level = separate_args(data, ",", True, 2)[0]
        if level not in ("ERROR", "WARNING", "NOTICE", "DEBUG", "VERBOSE", "DTMF"):
            self.problem(f"Log level {level!r}")
        return 0

    def app_Set(self, data: str) -> int:  # main/pbx_variables.c, pbx_builtin_setvar()
        name, sep, value = data.partition("=")
        if not sep:
            self.problem(f"Set({data}) without '='")
            return 0
        self.setvar(name, value)
        return 0

    def app_ExecIf(self, data: str) -> int:  # apps/app_exec.c, execif_exec()
        comma, question = data.find(","), data.find("?")
        if question < 0 or (0 <= comma < question):
            self.problem(f"ExecIf({data}) falls into the deprecated syntax")
            return -1
        cond, remainder = separate_args(data, "?", False, 2)
        branches = separate_args(remainder, ":", False, 2)
        chosen = branches[0] if checkcondition(cond) else (
            branches[1] if len(branches) > 1 else "")
        if not chosen:
            return 0
        name, _, args = chosen.partition("(")
        if ")" in args:
            args = args[: args.rindex(")")]
        if not hasattr(self, f"app_{name}"):
            self.problem(f"ExecIf: no application {name!r}")
            return -1
        return self.exec(name, args)

    def app_GotoIf(self, data: str) -> int:  # main/pbx_builtins.c, pbx_builtin_gotoif()
        cond, _, rest = data.partition("?")
        yes, _, no = rest.partition(":")
        branch = yes if checkcondition(cond) else no
        return self.goto(branch) if branch else 0

    def app_Goto(self, data: str) -> int:
        return self.goto(data)

    def app_Ringing(self, data: str) -> int:  # main/pbx_builtins.c: 180, no answer
        self.ringing = True
        return 0

    def app_Progress(self, data: str) -> int:  # main/pbx_builtins.c: 183 with SDP
        self.media = True
        return 0

    def app_Hangup(self, data: str) -> int:  # main/pbx_builtins.c: always -1
        self.end("hangup", data)
        return -1

    def app_Wait(self, data: str) -> int:  # main/pbx_builtins.c, ast_safe_sleep()
        if not self.moh:
            self.problem("Wait() in silence")
        if self.hangs_up_in("Wait"):
            self.end("caller-hangup", "during the busy wait")
        self.clock += float(data or 0)
        return self._timeout_check()

    def app_StartMusicOnHold(self, data: str) -> int:  # res/res_musiconhold.c
        if not (self.media or self.answered):
            self.problem("music on hold before any early media: the caller hears nothing")
        self.moh = True
        return 0

    def app_StopMusicOnHold(self, data: str) -> int:
        self.moh = False
        return 0

    def app_Playback(self, data: str) -> int:  # apps/app_playback.c, playback_exec()
        if not data:
            self.problem("Playback() without a file returns -1")
            return -1
        args = separate_args(data, ",", True, 2)
        options = args[1] if len(args) > 1 else ""
        if "noanswer" not in options.lower():
            self.answered = True
            self.problem("Playback without noanswer answers the call: the bill starts")
        elif not self.media:
            self.problem("early-media Playback without Progress(): the caller hears nothing")
        if self.hangs_up_in("Playback"):
            self.end("caller-hangup", "during the announcement")
        self.setvar("PLAYBACKSTATUS", "SUCCESS")
        return 0

    def app_AGI(self, data: str) -> int:  # res/res_agi.c, agi_exec_full() / run_agi()
        if not data:
            self.problem("AGI() without a script returns -1")
            return -1
        if not (self.ringing or self.media):
            self.problem("AGI runs with no ringback: the caller hears silence meanwhile")
        args = separate_args(data, ",", True, 128)
        self.out.agi_scripts.append(args[0])
        # FastAGI: agi://host:port/route; classic: the script's name in astagidir
        classic = "://" not in args[0] and "/" not in args[0]
        if not (args[0].endswith("/route") or classic) or len(args) < 2 or not args[1]:
            self.problem(f"AGI arguments {args!r}")
        status = self.sc.agistatus
        if status == "HANGUP":
            self.setvar("AGISTATUS", "HANGUP")
            self.end("caller-hangup", "during the AGI")
        if status == "SILENT":
            # No AGI timeout in Asterisk; only TIMEOUT(absolute) wakes run_agi(), and only
            # AGIEXITONHANGUP makes it stop waiting for a server that never closes.
            exit_on_hangup = self.getvar("AGIEXITONHANGUP").lower() in ("yes", "true", "1",
                                                                        "on", "y", "t")
            if not self.timeout_at:
                self.end("failed", "a silent daemon holds the call forever")
            self.clock = max(self.clock, self.timeout_at)
            if not exit_on_hangup:
                self.end("failed", "dead AGI waits forever for the server to close")
            self.softhangup_timeout = True
            self.setvar("AGISTATUS", "HANGUP")
            return -1
        self.setvar("AGISTATUS", status)
        if status == "SUCCESS":
            for k, v in self.sc.daemon.items():
                self.setvar(k, v)
        self.clock += 0.01
        return 0

    def app_Dial(self, data: str) -> int:  # apps/app_dial.c, dial_exec_full()
        args = separate_args(data, ",", True, 4)
        peers, timeout, options = [*args, "", "", ""][:3]
        self.setvar("DIALSTATUS", "")
        if options and not _options_parse(options):
            self.setvar("DIALSTATUS", "INVALIDARGS")
            self.end("failed", f"Dial options {options!r} do not parse: Dial returns -1")
        dialed = 0
        for cur in peers.split("&"):
            cur = cur.strip()
            if not cur:
                continue
            dialed += 1
            _tech, sep, number = cur.partition("/")
            if not sep or not number:
                self.setvar("DIALSTATUS", "INVALIDARGS")
                self.end("failed", f"Dial target {cur!r}: Dial returns -1, the call ends")
        if not dialed:
            self.setvar("DIALSTATUS", "CHANUNAVAIL")
            return 0
        answer = timeout.split("^")[0]
        m = re.match(r"\s*([0-9]*\.?[0-9]+)", answer)
        seconds = float(m.group(1)) if m else 0.0
        if seconds <= 0:
            self.end("failed", f"Dial timeout {timeout!r}: rings forever")
        self.out.dial_timeouts.append(seconds)
        self.out.dial_options.append(options)
        if not re.search(r"[rm]", options):
            self.problem(f"Dial without r or m ({options!r}): ringback is up to the callee")
        status = self.sc.dialstatus
        self.setvar("DIALSTATUS", status)
        if status == "ANSWER":
            self.end("answered", peers)
        if status == "CANCEL":
            self.end("caller-hangup", "while the target rang")
        self.clock += seconds if status == "NOANSWER" else 0.1
        return self._timeout_check()

    def app_Queue(self, data: str) -> int:  # apps/app_queue.c, queue_exec()
        args = separate_args(data, ",", True, 9)
        name = args[0] if args else ""
        if not name:
            self.problem("Queue() without a queue name returns -1")
            return -1
        prio = self.getvar("QUEUE_PRIO")
        if prio and not re.match(r"\s*[+-]?\d+", prio):
            self.problem(f"QUEUE_PRIO {prio!r} is not a number (app_queue.c uses 0)")
        self.out.queues_tried.append((name, prio))
        if not (self.media or "r" in (args[1] if len(args) > 1 else "")):
            self.problem(f"Queue({name}) music on hold without early media: silence")
        if name not in self.queues:
            self.setvar("QUEUESTATUS", "UNKNOWN")  # join_queue() fails, reason unchanged
            return 0
        status = self.sc.queue_status.get(name)
        if status is None:
            self.end("queued", name)  # waits for a member; nothing after runs
        self.setvar("QUEUESTATUS", status)
        return 0

    def _timeout_check(self) -> int:
        if self.timeout_at and self.clock >= self.timeout_at:
            self.softhangup_timeout = True
            return -1
        return 0

    # -- main/pbx.c, __ast_pbx_run() ----------------------------------------------------
    def run(self, max_steps: int = 50_000) -> Outcome:
        try:
            for _ in range(max_steps):
                prio = self.plan.prios.get((self.ctx, self.exten, self.pri))
                if prio is None:
                    self.end("failed", f"no priority {self.exten},{self.pri}: the call ends")
                self.jump = None
                data = self.subst(prio.data)
                res = self.exec(prio.app, data)
                if prio.app == "AGI":
                    self.out.timeout_after_agi = self.timeout_at - self.clock \
                        if self.timeout_at else 0.0
                if res != 0:
                    t = (self.ctx, "T", 1)
                    if self.softhangup_timeout and t in self.plan.prios:
                        self.timeout_at = 0.0  # pbx.c clears whentohangup before jumping
                        self.softhangup_timeout = False
                        self.ctx, self.exten, self.pri = t
                        continue
                    self.end("failed", f"{prio.app} returned {res} at {self.exten},{self.pri}")
                if self.jump:
                    self.ctx, self.exten, self.pri = self.jump
                else:
                    self.pri += 1
            self.end("failed", "no end after max_steps (a loop?)")
        except CallEnded:
            pass
        return self.out


def _options_parse(options: str) -> bool:
    """main/app.c, parse_options(): an option argument needs its closing ')'."""
    s = 0
    while s < len(options):
        s += 1
        if s < len(options) and options[s] == "(":
            depth = 1
            s += 1
            while s < len(options) and depth:
                if options[s] == "(":
                    depth += 1
                elif options[s] == ")":
                    depth -= 1
                s += 1
            if depth:
                return False
    return True


def run(scenario: Scenario, plan: Dialplan | None = None) -> Outcome:
    plan = plan or load_dialplan()
    return Channel(plan, scenario, queue_names(), globals_from_sample()).run()
