/* node.h -- the node process (private to ringkeep).
 *
 * node/ is the node process, one program for every role: the parts every
 * role shares (node.c: signals, the apply thread, the control endpoint's
 * server, the status), a primary's role (primary.c) and a standby's
 * (standby.c), with their shared state in internal.h; and the small
 * client of the control endpoint with the engines' state reader
 * (client.c, state.c), which are all of node/ that libringkeep carries.
 * It sits on replicator/, persist/ and shm/, which never include it. */
#ifndef RK_NODE_H
#define RK_NODE_H

#include "persist/config.h"

/* Runs the node c describes until SIGTERM/SIGINT or a fatal error: a
 * standby (role = standby), or a primary, which also publishes and serves
 * standbys when [replication] publish and serve are set.  Returns the exit
 * status (0 after a clean stop).  `ringkeep node` runs this. */
int repl_node_run(const struct node_config *c);

/* Runs a primary node with configuration c, without replication, until
 * SIGTERM or SIGINT (then finishes the batch in hand, applies what is
 * journaled and returns 0), or a fatal error (logged; returns non-zero,
 * and never acknowledges anything that was not made durable).  It refuses
 * a configuration with replication or another role (repl_node_run runs
 * those). */
int node_run(const struct node_config *c);

#endif
