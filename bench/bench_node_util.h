/* bench_node_util.h -- helpers for the benchmarks that run nodes (linked
 * with the node's client; bench_util.h is also linked into bench_ring,
 * which has no node). */
#ifndef RK_BENCH_NODE_UTIL_H
#define RK_BENCH_NODE_UTIL_H

/* Waits (at most 30 s) until the primary in data directory dir publishes
 * entries before its fsync, as a node that has run for a few seconds with
 * its standby does (a grace after the start: replicator/primary.c,
 * update_needed).  The seconds it took, or -1 if it did not. */
double bench_wait_publish_early(const char *dir);

#endif
