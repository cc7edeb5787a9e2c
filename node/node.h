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
 * standbys when [replication] publish and serve are set.  A standby asked
 * to "promote" (`ringkeep promote`) becomes a primary in the same process
 * (node_promote).  Returns the exit status (0 after a clean stop).
 * `ringkeep node` runs this. */
int repl_node_run(const struct node_config *c);

/* A standby's configuration c as the primary it becomes when promoted:
 * role primary, and checked (it must name its ring).  0, or RK_EINVAL
 * with the reason in err. */
int node_promote_config(const struct node_config *c, struct node_config *out, char *err, size_t err_size);

/* Promotion at start (`ringkeep node --promote`): runs standby
 * configuration c, whose standby is stopped, as a primary in a new epoch
 * (the one its data directory knows + 1, committed before anything else),
 * as repl_node_run does after a live "promote".  Returns the exit status. */
int node_promote(const struct node_config *c);

/* The exit status of a primary that stepped down (a node of a higher
 * epoch is the primary: `fence`, or a peer's message), and of one that
 * then refuses to start as a primary again (start it as a standby, or
 * promote it). */
#define NODE_EXIT_FENCED 4

/* Runs a primary node with configuration c, without replication, until
 * SIGTERM or SIGINT (then finishes the batch in hand, applies what is
 * journaled and returns 0), or a fatal error (logged; returns non-zero,
 * and never acknowledges anything that was not made durable).  It refuses
 * a configuration with replication or another role (repl_node_run runs
 * those). */
int node_run(const struct node_config *c);

#endif
