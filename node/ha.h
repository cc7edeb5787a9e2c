/* ha.h -- automatic failover through etcd (ha.c), for the node process's
 * roles.  Private to node/. */
#ifndef RK_NODE_HA_H
#define RK_NODE_HA_H

#include <stddef.h>
#include <stdint.h>

#include "persist/config.h"
#include "persist/store.h"

struct ha;
struct node;

/* Starts the rk-ha thread for configuration c ([ha] etcd set; c stays
 * valid until ha_stop): it grants a lease, publishes this node's member
 * record and, as the role attached asks, takes or watches the leader key.
 * 0 or an errno value (logged).  *out: ha_stop. */
int ha_start(const struct node_config *c, struct ha **out);

/* Stops the thread and revokes the lease (the leader key, if held, goes
 * with it: the others elect at once); NULL is a no-op. */
void ha_stop(struct ha *h);

/* A role's main thread, around its run (h NULL: no [ha], no-ops).  A
 * primary attaches once its ring is open (the ring acknowledges nothing
 * until the leader key is ours: ring_set_ack_deadline), a standby once
 * its replicator is open; either detaches before its node goes away. */
void ha_attach_primary(struct ha *h, struct node *n);
void ha_attach_standby(struct ha *h, struct node *n);
void ha_detach(struct ha *h);

/* A standby's main thread, after each step, and before an ACK says it
 * holds other than it said (repl_standby_host.acking: what it
 * acknowledged is in what its member record reports): its last entry
 * held durably, seq, with its store s (the epoch history: the epoch seq
 * was written in, and Q5's floor, node/ha.c), the epoch it follows, and
 * 0 while it bootstraps (no whole state: it cannot be promoted). */
void ha_standby_progress(struct ha *h, store *s, uint64_t seq, uint64_t epoch, int ready);

/* The epoch of the election this node won and leads in (0: none); a
 * promotion begins at least this epoch. */
uint64_t ha_won_epoch(struct ha *h);

/* A promotion by hand (no election won): etcd's epoch counter is moved to
 * *epoch = max(counter + 1, min) in one transaction, before the node
 * begins that epoch, so that no election hands it out (they take the
 * counter + 1) and the node takes the leader key in it only (node/ha.c,
 * primary_tick).  Its own etcd client, bounded by the tick; any thread.
 * 0, or an errno value with the reason in err: etcd unreachable (the
 * promotion cannot lead under [ha] anyway), or ESTALE: the promotion is
 * an election's whose lease was lost first, not one by hand. */
int ha_reserve_epoch(struct ha *h, uint64_t min, uint64_t *epoch, char *err, size_t err_size);

#endif
