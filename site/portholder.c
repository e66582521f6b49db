/* Finding the process that holds a local TCP port (for "source port taken" messages). */
/* SPDX-License-Identifier: MIT */
#include "portholder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tcp_state_name(unsigned st)
{
    static const char *names[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                  "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                  "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
    return st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* Finds a socket with local port `port` in one /proc/net table. */
static int scan_table(const char *path, int port, unsigned long *inode, unsigned *state)
{
    char line[512];
    FILE *f = fopen(path, "r");
    int found = 0;

    if (f == NULL)
        return 0;
    /* Header line first. */
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64];
        unsigned st, lport;
        unsigned long ino;
        const char *colon;

        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*u %*u %lu", local, remote, &st, &ino) !=
            4)
            continue;
        colon = strrchr(local, ':');
        if (colon == NULL || sscanf(colon + 1, "%x", &lport) != 1 || (int)lport != port)
            continue;
        /* Prefer a live socket (with an inode) over TIME_WAIT leftovers. */
        if (!found || (*inode == 0 && ino != 0)) {
            *inode = ino;
            *state = st;
        }
        found = 1;
    }
    fclose(f);
    return found;
}

/* Finds the process owning socket inode ino. */
static int find_owner(unsigned long ino, int *pid_out, char *comm, size_t comm_cap)
{
    char want[48], path[64], link[64];
    DIR *proc = opendir("/proc");
    struct dirent *de;
    int found = 0;

    if (proc == NULL)
        return 0;
    snprintf(want, sizeof(want), "socket:[%lu]", ino);
    while (!found && (de = readdir(proc)) != NULL) {
        DIR *fds;
        struct dirent *fe;
        char *endp;
        long pid = strtol(de->d_name, &endp, 10);

        if (*endp != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
        fds = opendir(path);
        if (fds == NULL)
            continue;
        while ((fe = readdir(fds)) != NULL) {
            ssize_t n;
            if (fe->d_name[0] == '.')
                continue;
            if (snprintf(path, sizeof(path), "/proc/%ld/fd/%s", pid, fe->d_name) >=
                (int)sizeof(path))
                continue;
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            if (strcmp(link, want) == 0) {
                found = 1;
                break;
            }
        }
        closedir(fds);
        if (found) {
            FILE *f;
            *pid_out = (int)pid;
            comm[0] = '\0';
            snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
            if ((f = fopen(path, "r")) != NULL) {
                if (fgets(comm, (int)comm_cap, f) == NULL)
                    comm[0] = '\0';
                comm[strcspn(comm, "\n")] = '\0';
                fclose(f);
            }
        }
    }
    closedir(proc);
    return found;
}

int portholder_describe(int port, char *out, size_t cap)
{
    unsigned long ino = 0, ino6 = 0;
    unsigned st = 0, st6 = 0;
    int in4, in6, pid = 0;
    char comm[64];

    in4 = scan_table("/proc/net/tcp", port, &ino, &st);
    in6 = scan_table("/proc/net/tcp6", port, &ino6, &st6);
    if (!in4 && !in6) {
        snprintf(out, cap, "no socket uses it now");
        return -ENOENT;
    }
    if ((!in4 || ino == 0) && in6 && ino6 != 0) {
        ino = ino6;
        st = st6;
    } else if (!in4) {
        st = st6;
    }
    if (ino != 0 && find_owner(ino, &pid, comm, sizeof(comm)))
        snprintf(out, cap, "pid %d (%s), socket state %s", pid, comm[0] ? comm : "?",
                 tcp_state_name(st));
    else
        snprintf(out, cap, "a socket in state %s owned by no process visible to this user",
                 tcp_state_name(st));
    return 0;
}
