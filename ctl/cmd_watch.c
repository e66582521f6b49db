/* tetherctl site watch: one line per site change, read from the hub's event stream, until
 * interrupted. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "table.h"

/* The hub writes a keep-alive comment after 15 s of silence: three missed
 * ones mean the connection is gone, even if no RST ever arrives. */
#define IDLE_S 45
/* Reconnects back off from 1 s, doubling, to this. */
#define BACKOFF_MAX_S 30
/* An event is a few dozen bytes; a longer line is skipped, not buffered. */
#define LINE_MAX_LEN 4096

/* The Server-Sent Events reader (one per run; reset at each connection). */
struct watch {
    struct ctl *c;
    char line[LINE_MAX_LEN + 1];
    size_t len;
    int too_long; /* the current line is being skipped */
    char event[32];
    char data[LINE_MAX_LEN + 1];
    int has_data;
    int started;    /* bytes of a 2xx answer arrived on this connection */
    int resumed;    /* a reconnect after a lost stream: say so once it works */
    int out_failed; /* stdout could not be written (a closed pipe) */
};

/* The lines are flushed one by one, so a signal loses nothing: exit at once. */
static void on_signal(int sig)
{
    (void)sig;
    _exit(CTL_EXIT_OK);
}

/* One "site" event: {"site","event","state"} from the hub. */
static void print_event(struct watch *w)
{
    json_t *j = json_loads(w->data, 0, NULL); /* owned here */
    const char *site = ctl_jstr(j, "site"), *ev = ctl_jstr(j, "event");
    const char *state = ctl_jstr(j, "state");
    char when[32];
    char *csite = NULL, *cev = NULL, *cstate = NULL;

    if (site == NULL || ev == NULL)
        goto out;
    if (w->c->json) {
        json_object_set_new(j, "ts", json_integer((json_int_t)time(NULL)));
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    } else {
        ctl_fmt_time((long long)time(NULL), when, sizeof(when));
        csite = table_clean(site);
        cev = table_clean(ev);
        cstate = table_clean(state != NULL ? state : "-");
        printf("%s  %-16s  %-7s  %s\n", when, csite ? csite : "?", cev ? cev : "?",
               cstate ? cstate : "?");
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        w->out_failed = 1;
out:
    free(csite);
    free(cev);
    free(cstate);
    json_decref(j);
}

/* A whole line of the stream (without its end). */
static void take_line(struct watch *w, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0) {
        /* A blank line ends an event; an event without a name is "message". */
        if (w->has_data && (w->event[0] == '\0' || strcmp(w->event, "site") == 0))
            print_event(w);
        w->event[0] = '\0';
        w->has_data = 0;
        return;
    }
    if (line[0] == ':')
        return; /* a comment: the hub's greeting and keep-alives */
    if (len > 6 && strncmp(line, "event:", 6) == 0) {
        size_t o = line[6] == ' ' ? 7 : 6;
        snprintf(w->event, sizeof(w->event), "%.*s", (int)(len - o), line + o);
    } else if (len > 5 && strncmp(line, "data:", 5) == 0) {
        size_t o = line[5] == ' ' ? 6 : 5;
        /* The hub sends one data line per event. */
        snprintf(w->data, sizeof(w->data), "%.*s", (int)(len - o), line + o);
        w->has_data = 1;
    }
}

static int on_body(void *arg, const char *data, size_t len)
{
    struct watch *w = arg;

    if (!w->started) {
        w->started = 1;
        if (w->resumed) {
            ctl_err("watching again; changes while the stream was down are not shown "
                    "('tetherctl site list' shows where the sites stand)");
            w->resumed = 0;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (!w->too_long)
                take_line(w, w->line, w->len);
            w->len = 0;
            w->too_long = 0;
        } else if (w->len < LINE_MAX_LEN) {
            w->line[w->len++] = data[i];
        } else {
            w->too_long = 1;
        }
    }
    return w->out_failed ? -EPIPE : 0;
}

int cmd_site_watch(struct ctl *c, const struct ctl_args *a)
{
    static struct watch w; /* 8 KiB of buffers: not on the stack */
    struct sigaction sa;
    char err[512];
    int backoff = 1, ever = 0, rc;

    (void)a;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    w.c = c;
    for (;;) {
        w.len = 0;
        w.too_long = 0;
        w.event[0] = '\0';
        w.has_data = 0;
        w.started = 0;
        rc = ctl_stream(c, "/v1/events", IDLE_S, on_body, &w, err, sizeof(err));
        if (w.out_failed) {
            ctl_err("cannot write the output: %s", strerror(errno));
            return CTL_EXIT_FAIL;
        }
        if (rc != CTL_EXIT_NETWORK)
            return rc; /* refused (printed), or no configuration */
        if (!ever && !w.started) {
            /* Not even the first connection: a wrong address or pin. */
            ctl_report_unreachable(err);
            return rc;
        }
        ever = 1;
        if (w.started)
            backoff = 1;
        ctl_err("lost the hub's event stream (%s); trying again in %d s", err, backoff);
        w.resumed = 1;
        sleep((unsigned)backoff);
        backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
    }
}
