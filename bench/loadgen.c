/*
 * loadgen: Asterisk's side of FastAGI, as a lean load generator for bench/bench_fastagi.py.
 *
 * One thread, one epoll set. Each call opens a non-blocking TCP connection (TCP_NODELAY) to
 * the daemon, sends the call's environment block, answers every command line the way
 * Asterisk 22 does (the replies of callrouter/simulator/agi.py's ChannelModel, taken from
 * the traces in ../shared/asterisk) and ends when the daemon closes the connection. The
 * line starting with "EXEC MSet " is kept (its argument is written to the result file) and
 * answered "200 result=0"; other commands are counted. No variables are kept, so GET
 * VARIABLE answers "not set". Latency is connect start to EOF on CLOCK_MONOTONIC.
 *
 * Modes:
 *   paced   calls start at their arrival offsets (seconds from the start). At most
 *           -c sessions are in flight; a call whose arrival finds all of them busy starts
 *           as soon as one frees and is marked late. Every call's lag (arrival -> start)
 *           is written; for the calls that were not late it is the generator's own delay
 *           (wake-up and the events handled before), summarised as on_time_lag_*.
 *   closed  arrival offsets are ignored: -c sessions each start the next call at once.
 *
 * Usage: loadgen -i INPUT -o OUTPUT -p PORT [-a 127.0.0.1] [-c 200] [-m paced|closed]
 *                [-t 10] [-d 0]
 *
 * -d DELAY_US: answer the MSet DELAY_US microseconds after it came instead of at once, as
 * an Asterisk far away or busy would; the session stays open meanwhile, so at a given rate
 * more sessions are open at once (Little's law: rate x delay).
 *
 * INPUT (little-endian):
 *   "CRLGIN1\n", u32 number of calls, u32 zero;
 *   per call: f64 arrival offset in seconds, u32 length, that many bytes of env block.
 *
 * OUTPUT (text, one line per call in call order, tab-separated):
 *   call  status  latency_ns  lag_ns  late  other_commands  decided_ns  mset_argument
 * status is ok, nomset (EOF before any MSet), refused (connect failed), reset (the
 * connection broke after it was made), timeout (-t seconds without EOF), protocol (a line
 * longer than the buffer, or replies the daemon does not read), error (socket() etc.);
 * latency_ns is -1 when the call never connected or timed out; decided_ns is the time from
 * the start to the MSet line (the daemon's decision), -1 when none came. Then one line
 *   # summary key=value ...
 * with the counts, the start (t0_ns, CLOCK_MONOTONIC: arrival offsets count from it), the
 * wall seconds from the start to the last call's end and this
 * process's CPU (getrusage RUSAGE_SELF, user and system) taken then, before the result
 * file is written.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE_BUF 8192  /* the longest command line a call may receive */
#define OUT_BUF 1024   /* replies not yet taken by the kernel (never, in practice) */
#define MAX_EVENTS 256

enum status { ST_OK, ST_NOMSET, ST_REFUSED, ST_RESET, ST_TIMEOUT, ST_PROTOCOL, ST_ERROR,
              ST_NOTRUN, ST_COUNT };
static const char *const status_name[ST_COUNT] = {
    "ok", "nomset", "refused", "reset", "timeout", "protocol", "error", "notrun"};

struct call {
    const char *block;
    uint32_t block_len;
    int64_t arrival_ns;  /* absolute, CLOCK_MONOTONIC (paced mode) */
    int64_t latency_ns;
    int64_t lag_ns;
    int64_t decided_ns;  /* start -> the MSet line came; -1: none */
    uint32_t mset_off, mset_len;
    uint16_t other_cmds;
    uint8_t status;
    uint8_t late;
    uint8_t has_mset;
};

struct session {
    int fd;
    uint32_t gen;        /* bumped per call: stale epoll events are recognised */
    uint32_t call;
    int64_t started_ns;
    uint32_t sent;       /* bytes of the env block already sent */
    int answered;        /* ANSWER or EXEC Playback seen (CHANNEL STATUS says 6, not 4) */
    int want_out;        /* EPOLLOUT is in the socket's event mask */
    int registered;      /* the socket is in the epoll set */
    size_t in_len;
    size_t out_len;
    struct session *prev, *next;  /* in-flight list, oldest start first */
    char in[LINE_BUF];
    char out[OUT_BUF];
};

static struct call *calls;
static uint32_t n_calls;
static struct session *sessions;
static uint32_t *free_slots;
static uint32_t n_free;
static struct session *oldest, *newest;
static int epfd;
static char *arena;              /* every MSet argument, back to back */
static size_t arena_len, arena_cap;
static struct sockaddr_in daemon_addr;
static uint32_t in_flight, max_in_flight;
static int64_t last_end_ns;      /* when the latest call ended */
static int64_t reply_delay_ns;   /* -d: the MSet's reply waits this long */
/* MSet replies waiting for their time, oldest first (the delay is the same for all, so
 * they fall due in the order they were queued): a ring of session slot, its call
 * generation then, and the time due. */
static uint32_t *pend_slot, *pend_gen;
static int64_t *pend_due;
static uint32_t pend_cap, pend_head, pend_len;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double lef64(const unsigned char *p)
{
    uint64_t bits = (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(path);
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        die("malloc");
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            die(path);
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

static void load_input(const char *path)
{
    size_t len;
    unsigned char *buf = read_file(path, &len);
    if (len < 16 || memcmp(buf, "CRLGIN1\n", 8) != 0) {
        fprintf(stderr, "%s: not a loadgen input file\n", path);
        exit(2);
    }
    n_calls = le32(buf + 8);
    calls = calloc(n_calls ? n_calls : 1, sizeof *calls);
    if (!calls)
        die("calloc");
    size_t off = 16;
    for (uint32_t i = 0; i < n_calls; i++) {
        if (len - off < 12) {
            fprintf(stderr, "%s: truncated at call %u\n", path, i);
            exit(2);
        }
        double at = lef64(buf + off);
        uint32_t n = le32(buf + off + 8);
        off += 12;
        if (len - off < n) {
            fprintf(stderr, "%s: truncated at call %u\n", path, i);
            exit(2);
        }
        calls[i].arrival_ns = (int64_t)(at * 1e9);
        calls[i].block = (const char *)buf + off;
        calls[i].block_len = n;
        calls[i].latency_ns = -1;
        calls[i].decided_ns = -1;
        calls[i].status = ST_NOTRUN;
        off += n;
    }
}

static void arena_put(struct call *c, const char *p, size_t n)
{
    if (arena_len + n > arena_cap) {
        arena_cap = (arena_cap + n) * 2;
        arena = realloc(arena, arena_cap);
        if (!arena)
            die("realloc");
    }
    memcpy(arena + arena_len, p, n);
    c->has_mset = 1;
    c->mset_off = (uint32_t)arena_len;
    c->mset_len = (uint32_t)n;
    arena_len += n;
}

/* ---- the in-flight list (all calls share one timeout, so the oldest expires first) ---- */

static void list_push(struct session *s)
{
    s->next = NULL;
    s->prev = newest;
    if (newest)
        newest->next = s;
    else
        oldest = s;
    newest = s;
}

static void list_remove(struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        oldest = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        newest = s->prev;
}

static void finish(struct session *s, enum status st)
{
    int64_t t = now_ns();
    struct call *c = &calls[s->call];
    if (st == ST_OK && !c->has_mset)
        st = ST_NOMSET;
    c->status = (uint8_t)st;
    c->latency_ns = (st == ST_REFUSED || st == ST_TIMEOUT || st == ST_ERROR)
                        ? -1 : t - s->started_ns;
    if (s->fd >= 0)
        close(s->fd);  /* also takes it out of the epoll set */
    s->fd = -1;
    s->gen++;
    list_remove(s);
    free_slots[n_free++] = (uint32_t)(s - sessions);
    in_flight--;
    last_end_ns = t;
}

/* ---- sending ---- */

static void want_out(struct session *s)
{
    if (s->want_out || !s->registered)
        return;  /* start_call registers with EPOLLOUT when something is left */
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLRDHUP | EPOLLET | EPOLLOUT,
        .data.u64 = (uint64_t)s->gen << 32 | (uint32_t)(s - sessions),
    };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
        die("epoll_ctl");
    s->want_out = 1;
}

/* Sends what is pending: the rest of the env block, then queued replies. 0, or -1 with the
 * call finished. */
static int flush(struct session *s)
{
    const struct call *c = &calls[s->call];
    while (s->sent < c->block_len) {
        ssize_t n = send(s->fd, c->block + s->sent, c->block_len - s->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                want_out(s);  /* connecting still, or no room: EPOLLOUT brings us back */
                return 0;
            }
            finish(s, errno == ECONNREFUSED ? ST_REFUSED : ST_RESET);
            return -1;
        }
        s->sent += (uint32_t)n;
    }
    size_t done = 0;
    while (done < s->out_len) {
        ssize_t n = send(s->fd, s->out + done, s->out_len - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                want_out(s);
                break;
            }
            finish(s, ST_RESET);
            return -1;
        }
        done += (size_t)n;
    }
    if (done) {
        memmove(s->out, s->out + done, s->out_len - done);
        s->out_len -= done;
    }
    return 0;
}

static int reply(struct session *s, const char *r, size_t n)
{
    if (s->out_len + n > OUT_BUF) {
        finish(s, ST_PROTOCOL);  /* the daemon sends commands but reads no replies */
        return -1;
    }
    memcpy(s->out + s->out_len, r, n);
    s->out_len += n;
    if (s->sent < calls[s->call].block_len)
        return 0;  /* the env block goes first; flush() sends both */
    return flush(s);
}

#define REPLY(s, lit) reply((s), (lit), sizeof(lit) - 1)

/* ---- answering commands as Asterisk does ---- */

/* Splits like res_agi's argument parser (double quotes group, backslash escapes, space and
 * tab separate; a CR stays part of its word). Returns argc and copies the first `keep`
 * words, upper-cased and cut to 23 bytes, into words. */
static int split_words(const char *p, size_t n, char words[][24], int keep)
{
    int argc = 0, in_word = 0, quoted = 0, escaped = 0;
    size_t wl = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '"' && !escaped) {
            quoted = !quoted;
            if (quoted && !in_word) {
                in_word = 1;
                wl = 0;
                argc++;
            }
            continue;
        }
        if ((ch == ' ' || ch == '\t') && !quoted && !escaped) {
            in_word = 0;
            continue;
        }
        if (ch == '\\' && !escaped) {
            escaped = 1;
            continue;
        }
        if (!in_word) {
            in_word = 1;
            wl = 0;
            argc++;
        }
        if (argc <= keep && wl < 23) {
            words[argc - 1][wl++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
            words[argc - 1][wl] = '\0';
        }
        escaped = 0;
    }
    return argc;
}

static const char R_510[] = "510 Invalid or unknown command\n";
static const char R_520_SET[] =
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Sets a variable to the current channel.\n"
    "520 End of proper usage.\n";
static const char R_520_GET[] =
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
    "Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
    "returns the variable in parentheses.\n"
    "Example return code: 200 result=1 (testvariable)\n"
    "520 End of proper usage.\n";

/* Any command but the MSet: the reply of ChannelModel.answer for a live channel. Variables
 * are not kept, so GET VARIABLE answers "not set" and GET FULL VARIABLE an empty value. */
static int answer(struct session *s, const char *line, size_t n)
{
    char w[3][24] = {{0}};
    int argc = split_words(line, n, w, 3);
    struct call *c = &calls[s->call];
    if (c->other_cmds < UINT16_MAX)
        c->other_cmds++;
    if (argc == 0)
        return REPLY(s, R_510);
    if (!strcmp(w[0], "NOOP"))
        return REPLY(s, "200 result=0\n");
    if (!strcmp(w[0], "ANSWER")) {
        s->answered = 1;
        return REPLY(s, "200 result=0\n");
    }
    if (!strcmp(w[0], "VERBOSE"))
        return REPLY(s, "200 result=1\n");
    if (!strcmp(w[0], "CHANNEL") && argc >= 2 && !strcmp(w[1], "STATUS")) {
        if (argc > 2)  /* a named channel: not this call's (its name is not tracked) */
            return REPLY(s, "200 result=-1\n");
        return s->answered ? REPLY(s, "200 result=6\n") : REPLY(s, "200 result=4\n");
    }
    if (!strcmp(w[0], "SET") && argc >= 2 && !strcmp(w[1], "VARIABLE"))
        return argc < 4 ? REPLY(s, R_520_SET) : REPLY(s, "200 result=1\n");
    if (!strcmp(w[0], "GET") && argc >= 2 && !strcmp(w[1], "VARIABLE"))
        return argc < 3 ? REPLY(s, R_520_GET) : REPLY(s, "200 result=0\n");
    if (!strcmp(w[0], "GET") && argc >= 4 && !strcmp(w[1], "FULL") && !strcmp(w[2], "VARIABLE"))
        return REPLY(s, "200 result=1 ()\n");
    if (!strcmp(w[0], "STREAM") && argc >= 2 && !strcmp(w[1], "FILE"))
        return REPLY(s, "200 result=0 endpos=0\n");
    if (!strcmp(w[0], "EXEC") && argc >= 2) {
        const char *app = w[1];
        if (!strcmp(app, "PLAYBACK")) {
            s->answered = 1;
            return REPLY(s, "200 result=0\n");
        }
        if (!strcmp(app, "MSET") || !strcmp(app, "SET") || !strcmp(app, "NOOP") ||
            !strcmp(app, "VERBOSE") || !strcmp(app, "LOG") || !strcmp(app, "USEREVENT"))
            return REPLY(s, "200 result=0\n");
        return REPLY(s, "200 result=-2\n");
    }
    return REPLY(s, R_510);
}

static const char MSET[] = "EXEC MSet ";

/* Handles the complete lines in s->in. 0, or -1 with the call finished. */
static int lines(struct session *s)
{
    size_t start = 0;
    char *nl;
    while ((nl = memchr(s->in + start, '\n', s->in_len - start)) != NULL) {
        const char *line = s->in + start;
        size_t n = (size_t)(nl - line);
        start += n + 1;
        int rc;
        if (n >= sizeof MSET - 1 && !memcmp(line, MSET, sizeof MSET - 1)) {
            struct call *c = &calls[s->call];
            arena_put(c, line + sizeof MSET - 1, n - (sizeof MSET - 1));
            int64_t t = now_ns();
            if (c->decided_ns < 0)
                c->decided_ns = t - s->started_ns;
            if (!reply_delay_ns) {
                rc = REPLY(s, "200 result=0\n");
            } else if (pend_len == pend_cap) {
                finish(s, ST_PROTOCOL);  /* more MSets in flight than sessions: not a daemon */
                rc = -1;
            } else {
                uint32_t k = (pend_head + pend_len++) % pend_cap;
                pend_slot[k] = (uint32_t)(s - sessions);
                pend_gen[k] = s->gen;
                pend_due[k] = t + reply_delay_ns;
                rc = 0;
            }
        } else {
            rc = answer(s, line, n);
        }
        if (rc < 0)
            return -1;
    }
    if (start) {
        memmove(s->in, s->in + start, s->in_len - start);
        s->in_len -= start;
    }
    if (s->in_len == LINE_BUF) {
        finish(s, ST_PROTOCOL);
        return -1;
    }
    return 0;
}

/* Reads what is there (edge-triggered: until a short read, or EOF/EAGAIN). */
static void readable(struct session *s, int hup)
{
    for (;;) {
        size_t room = LINE_BUF - s->in_len;
        ssize_t n = recv(s->fd, s->in + s->in_len, room, 0);
        if (n == 0) {
            finish(s, ST_OK);  /* the daemon closed: the call is over */
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                finish(s, errno == ECONNREFUSED ? ST_REFUSED : ST_RESET);
            return;
        }
        s->in_len += (size_t)n;
        if (lines(s) < 0)
            return;
        if ((size_t)n < room && !hup)
            return;  /* drained; a later byte or the FIN is a new edge */
    }
}

/* ---- starting calls ---- */


/* Starts call i in a free session (paced: `late` when its arrival found them all busy). */
static void start_call(uint32_t i, int paced, int late)
{
    int64_t t = now_ns();
    uint32_t slot = free_slots[--n_free];
    struct session *s = &sessions[slot];
    struct call *c = &calls[i];
    c->lag_ns = paced ? t - c->arrival_ns : 0;
    c->late = (uint8_t)late;
    s->call = i;
    s->started_ns = t;
    s->sent = 0;
    s->answered = 0;
    s->want_out = 0;
    s->registered = 0;
    s->in_len = 0;
    s->out_len = 0;
    list_push(s);
    if (++in_flight > max_in_flight)
        max_in_flight = in_flight;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        finish(s, ST_ERROR);
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&daemon_addr, sizeof daemon_addr) < 0 &&
        errno != EINPROGRESS) {
        finish(s, errno == ECONNREFUSED ? ST_REFUSED : ST_ERROR);
        return;
    }
    /* On loopback the handshake is usually done by now: send the env block at once, and
     * ask for EPOLLOUT only when some of it is left (a wake-up per call saved). */
    if (flush(s) < 0)
        return;
    s->want_out = s->sent < c->block_len;
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLRDHUP | EPOLLET | (s->want_out ? EPOLLOUT : 0),
        .data.u64 = (uint64_t)s->gen << 32 | slot,
    };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
        die("epoll_ctl");
    s->registered = 1;
}

static void on_event(struct session *s, uint32_t events)
{
    if (events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (s->sent == 0 && (err == ECONNREFUSED || err == ETIMEDOUT || err == ENETUNREACH ||
                             err == EHOSTUNREACH)) {
            finish(s, ST_REFUSED);
            return;
        }
        if (err) {
            finish(s, ST_RESET);
            return;
        }
    }
    if ((events & EPOLLOUT) && (s->sent < calls[s->call].block_len || s->out_len)) {
        if (flush(s) < 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
        readable(s, (events & (EPOLLRDHUP | EPOLLHUP)) != 0);
}

/* ---- the result file ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *sorted, size_t n, double q)
{
    if (!n)
        return 0.0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e6;
}

static void write_results(const char *path, const char *mode, int64_t t0_ns, int64_t wall_ns,
                          const struct rusage *ru)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die(path);
    static char iobuf[1 << 16];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    unsigned count[ST_COUNT] = {0};
    uint64_t others = 0;
    uint32_t late = 0;
    int64_t *on_time = malloc((n_calls ? n_calls : 1) * sizeof *on_time);
    size_t n_on_time = 0;
    if (!on_time)
        die("malloc");
    for (uint32_t i = 0; i < n_calls; i++) {
        const struct call *c = &calls[i];
        count[c->status]++;
        others += c->other_cmds;
        late += c->late;
        if (c->status != ST_NOTRUN && !c->late && !strcmp(mode, "paced"))
            on_time[n_on_time++] = c->lag_ns;
        fprintf(f, "%u\t%s\t%lld\t%lld\t%u\t%u\t%lld\t", i, status_name[c->status],
                (long long)c->latency_ns, (long long)c->lag_ns, c->late, c->other_cmds,
                (long long)c->decided_ns);
        fwrite(arena ? arena + c->mset_off : "", 1, c->mset_len, f);
        fputc('\n', f);
    }
    qsort(on_time, n_on_time, sizeof *on_time, cmp_i64);
    double user = (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6;
    double sys = (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
    fprintf(f, "# summary mode=%s calls=%u t0_ns=%lld", mode, n_calls, (long long)t0_ns);
    for (int st = 0; st < ST_COUNT; st++)
        fprintf(f, " %s=%u", status_name[st], count[st]);
    fprintf(f, " late=%u other_commands=%llu max_in_flight=%u wall_s=%.6f cpu_user_s=%.6f "
               "cpu_sys_s=%.6f on_time_lag_p50_ms=%.3f on_time_lag_p99_ms=%.3f "
               "on_time_lag_max_ms=%.3f\n",
            late, (unsigned long long)others, max_in_flight, (double)wall_ns / 1e9, user, sys,
            pct_ms(on_time, n_on_time, 0.50), pct_ms(on_time, n_on_time, 0.99),
            n_on_time ? (double)on_time[n_on_time - 1] / 1e6 : 0.0);
    if (fclose(f) != 0)
        die(path);
    free(on_time);
    printf("loadgen: %u calls (%s), %u ok, %u failed, %.3f s wall, %.3f s CPU\n", n_calls, mode,
           count[ST_OK], n_calls - count[ST_OK], (double)wall_ns / 1e9, user + sys);
}

/* ---- main loop ---- */

/* Sends the delayed MSet replies that are due by `t` (their call may have ended since). */
static void send_due_replies(int64_t t)
{
    while (pend_len && pend_due[pend_head] <= t) {
        struct session *s = &sessions[pend_slot[pend_head]];
        uint32_t gen = pend_gen[pend_head];
        pend_head = (pend_head + 1) % pend_cap;
        pend_len--;
        if (s->fd >= 0 && s->gen == gen)
            REPLY(s, "200 result=0\n");
    }
}

static int have_pwait2 = 1;

/* epoll_wait until `wake` (absolute ns; INT64_MAX: no limit). epoll_pwait2 takes a
 * timespec; without it (Linux < 5.11) the wait is rounded up to a millisecond, which shows
 * in the on-time start lag of the summary. */
static int wait_events(struct epoll_event *evs, int64_t wake, int64_t now)
{
    if (wake == INT64_MAX)
        return epoll_wait(epfd, evs, MAX_EVENTS, -1);
    int64_t d = wake > now ? wake - now : 0;
    if (d > (int64_t)3600 * 1000000000)
        d = (int64_t)3600 * 1000000000;
#ifdef SYS_epoll_pwait2
    if (have_pwait2) {
        struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
        long r = syscall(SYS_epoll_pwait2, epfd, evs, MAX_EVENTS, &ts, NULL, 0);
        if (r >= 0 || errno != ENOSYS)
            return (int)r;
        have_pwait2 = 0;
    }
#endif
    return epoll_wait(epfd, evs, MAX_EVENTS, (int)((d + 999999) / 1000000));
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen -i INPUT -o OUTPUT -p PORT [-a ADDR] [-c SESSIONS] [-d US] "
                    "[-m paced|closed] [-t TIMEOUT_S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *input = NULL, *output = NULL, *addr = "127.0.0.1", *mode = "paced";
    long port = -1, max_sessions = 200;
    double timeout_s = 10.0;
    int opt;
    while ((opt = getopt(argc, argv, "i:o:p:a:c:m:t:d:")) != -1) {
        switch (opt) {
        case 'i': input = optarg; break;
        case 'o': output = optarg; break;
        case 'p': port = strtol(optarg, NULL, 10); break;
        case 'a': addr = optarg; break;
        case 'c': max_sessions = strtol(optarg, NULL, 10); break;
        case 'm': mode = optarg; break;
        case 't': timeout_s = strtod(optarg, NULL); break;
        case 'd': reply_delay_ns = strtoll(optarg, NULL, 10) * 1000; break;
        default: usage();
        }
    }
    int closed = !strcmp(mode, "closed");
    if (!input || !output || port < 0 || port > 65535 || max_sessions < 1 ||
        max_sessions > 65536 || timeout_s <= 0 || reply_delay_ns < 0 ||
        (!closed && strcmp(mode, "paced")))
        usage();
    daemon_addr.sin_family = AF_INET;
    daemon_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &daemon_addr.sin_addr) != 1)
        usage();
    signal(SIGPIPE, SIG_IGN);

    load_input(input);
    sessions = calloc((size_t)max_sessions, sizeof *sessions);
    free_slots = calloc((size_t)max_sessions, sizeof *free_slots);
    pend_cap = 2 * (uint32_t)max_sessions;
    pend_slot = calloc(pend_cap, sizeof *pend_slot);
    pend_gen = calloc(pend_cap, sizeof *pend_gen);
    pend_due = calloc(pend_cap, sizeof *pend_due);
    if (!sessions || !free_slots || !pend_slot || !pend_gen || !pend_due)
        die("calloc");
    for (long i = max_sessions - 1; i >= 0; i--) {
        sessions[i].fd = -1;
        free_slots[n_free++] = (uint32_t)i;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  /* wake at the arrival, not 50 us after */

    const int64_t timeout_ns = (int64_t)(timeout_s * 1e9);
    const int64_t t0 = now_ns();
    for (uint32_t i = 0; i < n_calls; i++)
        calls[i].arrival_ns += t0;
    uint32_t next = 0;       /* the next call to start */
    uint32_t late_upto = 0;  /* calls before this one arrived while every session was busy */
    last_end_ns = t0;
    struct epoll_event evs[MAX_EVENTS];

    for (;;) {
        int64_t t = now_ns();
        send_due_replies(t);
        while (oldest && t - oldest->started_ns >= timeout_ns)
            finish(oldest, ST_TIMEOUT);
        while (next < n_calls && n_free && (closed || calls[next].arrival_ns <= t)) {
            start_call(next, !closed, next < late_upto);
            next++;
        }
        if (next == n_calls && in_flight == 0)
            break;

        int64_t wake = oldest ? oldest->started_ns + timeout_ns : INT64_MAX;
        if (pend_len && pend_due[pend_head] < wake)
            wake = pend_due[pend_head];
        if (!closed && n_free && next < n_calls && calls[next].arrival_ns < wake)
            wake = calls[next].arrival_ns;
        int nev = wait_events(evs, wake, t);
        if (nev < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        t = now_ns();
        if (!closed && !n_free) {
            /* every session was busy all through the wait (only this loop frees one), so
             * each call that arrived by now found them all busy: it starts late */
            if (late_upto < next)
                late_upto = next;
            while (late_upto < n_calls && calls[late_upto].arrival_ns <= t)
                late_upto++;
        }
        for (int k = 0; k < nev; k++) {
            uint64_t tag = evs[k].data.u64;
            struct session *s = &sessions[(uint32_t)tag];
            if (s->fd < 0 || s->gen != (uint32_t)(tag >> 32))
                continue;  /* that call ended earlier in this batch */
            on_event(s, evs[k].events);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    write_results(output, mode, t0, last_end_ns - t0, &ru);
    return 0;
}
