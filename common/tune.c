/* Start-up tuning: glibc (memcpy off `rep movsb`, fixed malloc thresholds, heap trimming on
 * demand) and the open-files limit. */
/* SPDX-License-Identifier: MIT */
#include "tune.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#if defined(__x86_64__) && defined(__GLIBC__)
#include <cpuid.h>
#define TUNE_SUPPORTED 1
#else
#define TUNE_SUPPORTED 0
#endif

#define TUNABLE     "glibc.cpu.x86_rep_movsb_threshold"
#define THRESHOLD   "2097152"
#define TUNABLE_CAP 4096

#if TUNE_SUPPORTED
static int cpu_is_amd(void)
{
    unsigned int a, b, c, d;
    char vendor[13];

    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = '\0';
    return strcmp(vendor, "AuthenticAMD") == 0 || strcmp(vendor, "HygonGenuine") == 0;
}
#endif

/* TUNE_OFF_ENV set to anything non-empty. */
static int tune_off(void)
{
    const char *off = getenv(TUNE_OFF_ENV);
    return off != NULL && off[0] != '\0';
}

const char *tune_state(void)
{
    const char *t = getenv("GLIBC_TUNABLES");

    if (t != NULL && strstr(t, TUNABLE "=" THRESHOLD) != NULL)
        return "vector-2MiB";
    if (tune_off())
        return "off";
    return "default";
}

int tune_reexec(char **argv)
{
#if TUNE_SUPPORTED
    const char *t = getenv("GLIBC_TUNABLES");
    char val[TUNABLE_CAP];
    int n;

    if (tune_off() || (t != NULL && strstr(t, TUNABLE) != NULL))
        return 0;
    if (!cpu_is_amd())
        return 0;
    /* Keep whatever tunables the operator set; add ours after them. */
    if (t != NULL && t[0] != '\0')
        n = snprintf(val, sizeof(val), "%s:%s=%s", t, TUNABLE, THRESHOLD);
    else
        n = snprintf(val, sizeof(val), "%s=%s", TUNABLE, THRESHOLD);
    if (n < 0 || (size_t)n >= sizeof(val))
        return -E2BIG;
    if (setenv("GLIBC_TUNABLES", val, 1) != 0)
        return -errno;
    execv("/proc/self/exe", argv);
    /* Not re-executed: say so through the state, and never try again. */
    n = -errno;
    setenv(TUNE_OFF_ENV, "exec-failed", 1);
    if (t != NULL)
        setenv("GLIBC_TUNABLES", t, 1);
    else
        unsetenv("GLIBC_TUNABLES");
    return n;
#else
    (void)argv;
    return 0;
#endif
}

static unsigned heap_trim_mib;

unsigned tune_heap_trim_mib(void)
{
    return heap_trim_mib;
}

unsigned tune_malloc(void)
{
#ifdef __GLIBC__
    if (tune_off())
        return 0;
    if (mallopt(M_MMAP_THRESHOLD, (int)TUNE_MMAP_BYTES) != 1)
        return 0;
    if (mallopt(M_TRIM_THRESHOLD, (int)TUNE_TRIM_BYTES) != 1)
        return 0;
    heap_trim_mib = TUNE_TRIM_BYTES >> 20;
    return heap_trim_mib;
#else
    return 0;
#endif
}

int tune_trim(void)
{
#ifdef __GLIBC__
    /* Unlike the trim threshold, which only shortens the top of the heap,
     * this also hands back whole free pages inside it, where the buffers of
     * thousands of closed connections lie between live ones. */
    return malloc_trim(0);
#else
    return 0;
#endif
}

/* The hub holds a descriptor per site and per user; the site one per
 * stream to a TCP or WebSocket service, up to its 1024 streams: both need
 * more than the usual soft limit of 1024, and may take up to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

void tune_program_start(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        tune_reexec(argv); /* returns only when untuned; the start-up line says which */
        tune_malloc();
        raise_fd_limit();
    }
    signal(SIGPIPE, SIG_IGN);
}
