/* Start-up tuning: glibc (memcpy off `rep movsb`, fixed malloc thresholds, heap trimming on
 * demand) and the open-files limit. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TUNE_H
#define TETHER_TUNE_H

/* Environment variable that turns the re-exec off (any non-empty value). */
#define TUNE_OFF_ENV "TETHER_NO_TUNE"

/*
 * On x86-64 glibc with an AMD (or Hygon) CPU, re-executes the running program
 * (/proc/self/exe, same argv and PID) with GLIBC_TUNABLES raising
 * glibc.cpu.x86_rep_movsb_threshold, so that copies below 2 MiB use glibc's
 * vector loop instead of `rep movsb`, which runs at a fraction of the speed on
 * these CPUs for page-aliased buffers (glibc bug 30994; see docs/benchmarks.md).
 * Does nothing when the tunable is already set, when TUNE_OFF_ENV is set, or
 * on other CPUs and C libraries. Call first thing in main(), before any thread
 * or file descriptor exists. argv is borrowed.
 * Returns 0 when nothing had to be done, or a negative errno when the re-exec
 * failed (the program then goes on untuned); on success it does not return.
 */
int tune_reexec(char **argv);

/* The first thing tether-hub's and tether-site's main() do: a `run`
 * command (argv[1]) is tuned (tune_reexec, then tune_malloc) and gets the
 * hard limit of open files as its soft one, and SIGPIPE is
 * ignored in every command (a peer that goes away is an error return, not a
 * death). argv is borrowed. */
void tune_program_start(int argc, char **argv);

/* What is in effect, for the start-up log line: "vector-2MiB", "default" or
 * "off". Static string. */
const char *tune_state(void);

/* Heap bytes glibc may keep free at the top of the heap instead of returning
 * them to the kernel, and the allocation size from which it uses mmap. */
#define TUNE_TRIM_BYTES (16u << 20)
#define TUNE_MMAP_BYTES (4u << 20)

/*
 * On glibc, fixes the malloc trim and mmap thresholds at TUNE_TRIM_BYTES and
 * TUNE_MMAP_BYTES. With the defaults, a burst of per-frame buffers freed at
 * the top of the heap is given back with brk() and faulted in again page by
 * page on the next burst; on a streaming upload that cost the site 4-7 CPU s
 * per GiB instead of 1 (docs/benchmarks.md). Does nothing when TUNE_OFF_ENV
 * is set or on other C libraries. Call at start-up, before threads exist.
 * Returns the trim threshold in MiB now in effect (0: the C library's default).
 */
unsigned tune_malloc(void);
/* What tune_malloc() set, for the start-up log line (0: nothing). */
unsigned tune_heap_trim_mib(void);

/* Gives the free pages of the heap back to the kernel now (glibc's
 * malloc_trim(0); works whatever TUNE_OFF_ENV says). Costs a walk of the
 * heap: call it after many frees, not after each. Returns 1 when memory was
 * released, 0 otherwise (or on other C libraries). */
int tune_trim(void);

#endif
