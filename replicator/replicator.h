/* replicator.h -- replication over ZeroMQ: the primary's side riding on a
 * node (primary.c) and the standby (standby.c).  docs/PROTOCOL.md is the
 * wire protocol; wire.h its codec.  Private to ringkeep. */
#ifndef RK_REPLICATOR_H
#define RK_REPLICATOR_H

#include "persist/config.h"

/* Runs the node c describes until SIGTERM/SIGINT or a fatal error, as
 * node_run does: a standby (role = standby: standby_run), or a primary,
 * which also publishes and serves standbys when [replication] publish and
 * serve are set.  Returns the exit status (0 after a clean stop). */
int repl_node_run(const struct node_config *c);

/* A standby: follows the primary at [replication] primary_publish and
 * primary_serve into data directory c->data_dir (see standby.c). */
int standby_run(const struct node_config *c);

#endif
