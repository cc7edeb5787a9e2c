/* node_harness.h -- helpers shared by the end-to-end node tests
 * (test_node, test_restore, test_repl): the stream's mixing function,
 * waiting until a forked node answers its status as itself, stopping a
 * child, and an engine's tables t0..t<n-1>.  Check assertions fail the
 * calling test. */
#ifndef RK_NODE_HARNESS_H
#define RK_NODE_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "ringkeep.h"

/* A 64-bit mixer (the MurmurHash3 finalizer): the tests' deterministic
 * streams are pure functions of it. */
uint64_t mix(uint64_t x);

/* Waits (up to bound_s) until the node pid forked on dir answers the
 * "status" request (each waiting at most request_ms) with its own pid;
 * fails the test when it exits first or does not answer in time. */
void wait_node_answers(const char *dir, pid_t pid, int bound_s, int request_ms);

/* Waits (bounded) until the signal sig, sent to pid, is no longer pending
 * (/proc/PID/status: ShdPnd, SigPnd): a thread of pid took it, so the same
 * signal sent again is delivered on its own, not merged with this one. */
void wait_signal_taken(pid_t pid, int sig);

/* Sends sig to pid and reaps it; returns its wait status. */
int stop(pid_t pid, int sig);

/* Registers tables "t0" .. "t<n-1>" on r into tables[0..n); returns the
 * first rk_table error, 0 when all are there. */
int open_tables(rk_ring *r, int n, uint16_t *tables);

/* The apply gate of a node started with RK_TEST_APPLY_GATE=<gate> (a
 * standby's or a primary's apply, persist/sys.c: sys_test_gate): limit
 * NULL holds apply, "" lets every entry through, a number the entries up
 * to it.  Replaced by a rename: apply never reads a half-written gate. */
void set_gate(const char *gate, const char *limit);

#endif
