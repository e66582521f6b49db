/* The PostgreSQL listener: one non-blocking libpq connection that LISTENs, read from the loop. */
/* SPDX-License-Identifier: MIT */
#include "notes.h"
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* The registry's own connection blocks the loop for each statement (a
 * round trip); this one never does: connect with PQconnectPoll, LISTEN with
 * PQsendQuery, read with PQconsumeInput, each when uv_poll says the socket
 * is ready. libpq may close its socket inside any of these calls (a lost
 * connection, a host tried after another), and libuv must not watch a
 * closed descriptor: the poll is stopped around every libpq call and, when
 * the socket changed, its handle is closed and made again for the new one. */

#define LISTEN_SQL "LISTEN tether_site; LISTEN tether_token; LISTEN tether_query"
/* libpq ignores connect_timeout in PQconnectPoll: the timer enforces it. */
#define CONNECT_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000

enum lstate {
    L_WAIT,       /* no connection; the timer brings the next attempt */
    L_CONNECTING, /* PQconnectPoll in progress */
    L_LISTENING,  /* LISTEN sent, its results not all read */
    L_READY,      /* listening */
};

enum pstate { P_NONE, P_ON, P_CLOSING };

struct registry_listener {
    uv_loop_t *loop;
    struct registry *r;
    const struct registry_listen_ops *ops;
    void *arg;
    PGconn *pc;
    enum lstate st;
    uv_poll_t poll;
    enum pstate pst;
    int poll_fd;
    int want;         /* uv_poll events to watch once the handle is (re)made */
    uv_timer_t timer; /* backoff, or the connect timeout */
    int timer_on;     /* initialised, not closed */
    unsigned backoff_ms;
    int was_up;    /* up was called once */
    int down_told; /* down was called since the last up */
    int stopping;
};

static void attempt(struct registry_listener *l);
static void arm(struct registry_listener *l, int events);

static void maybe_free(struct registry_listener *l)
{
    if (l->stopping && l->pst == P_NONE && !l->timer_on)
        free(l);
}

static void on_poll_closed(uv_handle_t *hd)
{
    struct registry_listener *l = hd->data;

    l->pst = P_NONE;
    if (l->stopping) {
        maybe_free(l);
        return;
    }
    /* The socket changed while the old handle closed: watch the new one. */
    if (l->pc != NULL && l->want != 0)
        arm(l, l->want);
}

static void on_timer_closed(uv_handle_t *hd)
{
    struct registry_listener *l = hd->data;

    l->timer_on = 0;
    maybe_free(l);
}

/* Stops watching (before a libpq call that may close the socket). */
static void pause_poll(struct registry_listener *l)
{
    if (l->pst == P_ON)
        uv_poll_stop(&l->poll);
}

static void close_poll(struct registry_listener *l)
{
    if (l->pst == P_ON) {
        uv_poll_stop(&l->poll);
        uv_close((uv_handle_t *)&l->poll, on_poll_closed);
        l->pst = P_CLOSING;
    }
}

static void on_poll(uv_poll_t *p, int status, int events);

/* Watches l->pc's socket for events (UV_READABLE, UV_WRITABLE). */
static void arm(struct registry_listener *l, int events)
{
    int fd = PQsocket(l->pc);

    l->want = events;
    if (fd < 0)
        return;
    if (l->pst == P_ON && l->poll_fd != fd)
        close_poll(l); /* on_poll_closed arms again */
    if (l->pst == P_CLOSING)
        return;
    if (l->pst == P_NONE) {
        if (uv_poll_init(l->loop, &l->poll, fd) != 0)
            return; /* the connect timeout ends the attempt */
        l->poll.data = l;
        l->pst = P_ON;
        l->poll_fd = fd;
    }
    uv_poll_start(&l->poll, events, on_poll);
}

/* libpq's message on one line, into out. */
static void pq_why(PGconn *pc, char *out, size_t cap)
{
    registry__pg_msg(pc, out, cap);
    if (out[0] == '\0')
        snprintf(out, cap, "connection lost");
}

/* The server's notices (and the FATAL it sends as it shuts down) would go
 * to stderr; the daemon logs only its own lines, and a lost connection
 * shows as one. */
static void on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

static void on_backoff(uv_timer_t *t)
{
    attempt(t->data);
}

/* The connection failed or was lost: drop it, tell, try again later. */
static void fail(struct registry_listener *l, const char *why)
{
    int first = !l->down_told;

    close_poll(l);
    if (l->pc != NULL)
        PQfinish(l->pc);
    l->pc = NULL;
    l->want = 0;
    l->st = L_WAIT;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&l->timer, on_backoff, l->backoff_ms, 0);
    l->down_told = 1;
    l->ops->down(l->arg, first, why);
}

static void fail_pq(struct registry_listener *l, const char *what)
{
    char why[300], msg[256];

    pq_why(l->pc, msg, sizeof(msg));
    snprintf(why, sizeof(why), "%s: %s", what, msg);
    fail(l, why);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct registry_listener *l = t->data;

    if (l->st == L_CONNECTING || l->st == L_LISTENING)
        fail(l, "connect timed out");
}

static void deliver(struct registry_listener *l)
{
    PGnotify *n;
    struct reg_note note;
    int own_pid = registry__pg_backend_pid(l->r);

    while (!l->stopping && l->pc != NULL && (n = PQnotifies(l->pc)) != NULL) {
        /* A payload no hub of this version sends is ignored: a newer hub's. */
        if (registry_note_parse(n->relname, n->extra, &note) == 0) {
            note.own = own_pid != 0 && n->be_pid == own_pid;
            l->ops->note(l->arg, &note);
        }
        PQfreemem(n);
    }
}

/* Reads what the server sent: LISTEN's results, notifications. */
static void read_input(struct registry_listener *l)
{
    PGresult *res;

    if (!PQconsumeInput(l->pc)) {
        fail_pq(l, "read");
        return;
    }
    while (l->st == L_LISTENING && !PQisBusy(l->pc)) {
        res = PQgetResult(l->pc);
        if (res == NULL) {
            int first = !l->was_up;

            uv_timer_stop(&l->timer);
            l->st = L_READY;
            l->backoff_ms = 0;
            l->was_up = 1;
            l->down_told = 0;
            l->ops->up(l->arg, first);
            if (l->stopping || l->pc == NULL)
                return;
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            PQclear(res);
            fail_pq(l, "LISTEN");
            return;
        }
        PQclear(res);
    }
    /* Anything else a listening connection gets (an error as the server
     * shuts down) is read and dropped; a lost connection shows below. */
    while (l->st == L_READY && !PQisBusy(l->pc) && (res = PQgetResult(l->pc)) != NULL)
        PQclear(res);
    deliver(l);
    if (l->stopping || l->pc == NULL)
        return;
    if (PQstatus(l->pc) != CONNECTION_OK) {
        fail_pq(l, "lost");
        return;
    }
}

static void step_connect(struct registry_listener *l)
{
    switch (PQconnectPoll(l->pc)) {
    case PGRES_POLLING_READING:
        arm(l, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        arm(l, UV_WRITABLE);
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        fail_pq(l, "connect");
        return;
    }
    if (PQsetnonblocking(l->pc, 1) != 0 || !PQsendQuery(l->pc, LISTEN_SQL)) {
        fail_pq(l, "LISTEN");
        return;
    }
    l->st = L_LISTENING;
    /* The connect timeout keeps running until LISTEN answers. */
    switch (PQflush(l->pc)) {
    case 0:
        arm(l, UV_READABLE);
        break;
    case 1:
        arm(l, UV_READABLE | UV_WRITABLE);
        break;
    default:
        fail_pq(l, "LISTEN");
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct registry_listener *l = p->data;

    if (l->stopping || l->pc == NULL)
        return;
    pause_poll(l);
    if (l->st == L_CONNECTING) {
        step_connect(l);
        return;
    }
    if (status < 0) {
        fail(l, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        int f = PQflush(l->pc);

        if (f < 0) {
            fail_pq(l, "write");
            return;
        }
        l->want = f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE;
    }
    if (events & UV_READABLE) {
        read_input(l);
        if (l->stopping || l->pc == NULL)
            return;
    }
    arm(l, l->want ? l->want : UV_READABLE);
}

static void attempt(struct registry_listener *l)
{
    if (l->stopping)
        return;
    l->pc = registry__pg_connect_start(registry__pg_url(l->r));
    if (l->pc == NULL || PQstatus(l->pc) == CONNECTION_BAD) {
        fail_pq(l, "connect");
        return;
    }
    PQsetNoticeReceiver(l->pc, on_notice, NULL);
    l->st = L_CONNECTING;
    uv_timer_start(&l->timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
    /* As if PQconnectPoll had said PGRES_POLLING_WRITING (libpq's manual). */
    arm(l, UV_WRITABLE);
}

int registry__pg_listen(struct registry *r, uv_loop_t *loop, const struct registry_listen_ops *ops,
                        void *arg, struct registry_listener **out)
{
    struct registry_listener *l;

    *out = NULL;
    if (r == NULL || loop == NULL || ops == NULL || ops->note == NULL || ops->up == NULL ||
        ops->down == NULL)
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->loop = loop;
    l->r = r;
    l->ops = ops;
    l->arg = arg;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->timer_on = 1;
    attempt(l);
    *out = l;
    return 0;
}

void registry__pg_listen_stop(struct registry_listener *l)
{
    l->stopping = 1;
    close_poll(l);
    if (l->pc != NULL)
        PQfinish(l->pc);
    l->pc = NULL;
    if (l->timer_on && !uv_is_closing((uv_handle_t *)&l->timer))
        uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    maybe_free(l);
}
