/* node.h -- the node process (private to ringkeep).
 *
 * node/ is the node process: its main loop and roles, threads, signals,
 * the server of the control endpoint and the status (node.c), and the
 * small client of that endpoint with the engines' state reader
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
