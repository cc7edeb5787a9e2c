/* node.c -- the node process: one program for every role.  The role is a
 * field of the node (enum node_role, internal.h), not a separate program:
 * repl_node_run picks it, the main thread runs the role's loop
 * (run_primary in primary.c, run_standby in standby.c), and these process
 * parts are the same for both:
 *   - signals: catch_signals (the first SIGTERM/SIGINT stops the node
 *     cleanly, a second stops a standby's apply early; SIGIO: a lease
 *     on a snapshot file kept mapped is breaking), start_thread
 *     (threads never take them);
 *   - the apply thread (apply_main), whose steps are the role's;
 *   - the control loop (control_start, control_answer: "status" for every
 *     role, the primary's requests through primary_answer);
 *   - the status (status_object: what every node says, then the role's
 *     members).
 *
 * Threads: the main thread and the control thread here; the role adds
 * its own (primary.c, standby.c).  The control thread reads the node
 * under `lock` or through atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "node/client.h"
#include "node/internal.h"
#include "node/node.h"
#include "persist/json_bytes.h"
#include "persist/log.h"
#include "persist/set_aside.h"
#include "replicator/replicator.h"

/* ------------------------------------------------------------ signals */

/* SIGTERM/SIGINT, for every role: the first stops the node cleanly; a
 * second one stops a standby's apply before it has caught up
 * (apply_finish). */
volatile sig_atomic_t node_signal, node_n_signals;

struct ha *node_ha;

static void on_signal(int sig)
{
    node_signal = sig;
    node_n_signals++;
}

/* NODE_LEASE_SIGNAL: a file the node keeps mapped (a primary's snapshot
 * base, the overlay a rebase merges: ckpt_leases_enable) is being opened
 * for writing or truncated, most likely by an engine through its hard
 * link; the truncation waits until the node lets go of the file
 * (snapshot_leases_broken, on the control thread at its next idle step or
 * request).  Any break drops every file kept: one flag, no si_fd. */
atomic_int node_lease_broken;

static void on_lease_break(int sig)
{
    (void)sig;
    /* relaxed: the flag carries no data; the control thread only lets go
     * of files, whatever it reads alongside */
    atomic_store_explicit(&node_lease_broken, 1, memory_order_relaxed);
}

/* First of all in every role: a SIGTERM during start-up stops the node
 * cleanly once it is up, and never runs a handler inherited from a
 * parent. */
static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    /* SA_RESTART: the main thread, which takes it (start_thread), is
     * mostly in the drain's reads and writes; a break never stops it */
    struct sigaction lease = {.sa_handler = on_lease_break, .sa_flags = SA_RESTART};

    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* before any base is mapped: SIGIO's default action would kill the
     * node.  Test hook: RK_TEST_NO_LEASES set, none taken, so that a test
     * can change a base in place, as where leases are unavailable */
    if (sigaction(NODE_LEASE_SIGNAL, &lease, NULL) == 0 && !getenv("RK_TEST_NO_LEASES"))
        ckpt_leases_enable(NODE_LEASE_SIGNAL);
}

/* Starts a thread that does not take the signals (the main thread sees
 * them).  0 or an errno value. */
int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    int rc;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, NODE_LEASE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ------------------------------------------------------------ apply */

/* The apply thread, one for every role; what it does between entries is
 * the role's. */
void *apply_main(void *arg)
{
    struct node *n = arg;

    pthread_setname_np(pthread_self(), "rk-apply"); /* top -H, perf, gdb */
    if (n->role == ROLE_STANDBY)
        apply_standby(n);
    else
        apply_primary(n);
    return NULL;
}

/* ------------------------------------------------------------ status */

/* The status object, one builder for every role: what every node says
 * (role, epoch, pid, data directory), then the role's members (a
 * primary's, or a standby's from replicator/standby.c), then the runs the
 * directory set aside (set_aside_json).  Names and paths
 * keep their bytes (json_bytes.h).  A new reference; NULL when out of
 * memory.  A primary's is built on the control thread at each request; a
 * standby's on the main thread, which owns the standby's state
 * (standby_status keeps it as text for the control thread). */
json_t *status_object(struct node *n)
{
    int standby = n->role == ROLE_STANDBY;
    struct apply_meta am = standby ? standby_applied(n) : (struct apply_meta){0};
    uint64_t epoch = standby ? repl_standby_epoch(n->standby) : n->epoch;
    json_t *st = json_pack("{s:s, s:o, s:i, s:o}", "role", n->c->role, "epoch", json_uint(epoch), "pid",
                           (int)getpid(), "data_dir", json_cstr(n->c->data_dir));
    json_t *members = standby ? repl_standby_status(n->standby, &am) : primary_status(n);

    struct set_aside_run *runs = NULL;
    size_t n_runs = 0;
    json_t *aside = NULL;

    /* what this directory set aside past a fork point (a former primary
     * that rejoined, a standby): listed from set-aside/'s file names */
    if (set_aside_list(n->c->data_dir, &runs, &n_runs) == 0)
        aside = set_aside_json(runs, n_runs);
    free(runs);
    if (!st || !members || !aside || json_object_update(st, members) != 0 || json_object_update(st, aside) != 0 ||
        (standby && checkpoint_status(n, st) != 0)) {
        json_decref(st);
        st = NULL;
    }
    json_decref(members);
    json_decref(aside);
    return st;
}

/* A primary's status reply: one line of compact JSON, or "error ..." when
 * it does not fit. */
static void status_json(struct node *n, char *out, size_t out_size)
{
    json_t *st = status_object(n);
    size_t len = st ? json_dumpb(st, out, out_size - 1, JSON_COMPACT) : 0;

    if (len > 0 && len < out_size)
        out[len] = '\0';
    else
        snprintf(out, out_size, "error the status does not fit in %zu bytes (or out of memory)", out_size);
    json_decref(st);
}

/* ------------------------------------------------------------ control */

/* What node_control_serve's idle() has to do between requests, and the
 * receive timeout until its next step (nothing: 100 ms, to look at the
 * stop flag). */
static void idle_step(void *sock, int (*idle)(void *arg), void *arg, int *timeout)
{
    int want = idle ? idle(arg) : -1;

    want = want < 0 ? 100 : want;
    if (want != *timeout && zmq_setsockopt(sock, ZMQ_RCVTIMEO, &want, sizeof want) == 0)
        *timeout = want;
}

/* Serves the control endpoint (ZeroMQ REP, requests up to
 * NODE_CONTROL_MAX_REQUEST bytes) on the calling thread until *stop:
 * answer() writes the reply to each request (NUL-terminated, at most
 * reply_size bytes).  For the primary's and a standby's control threads. */
static void node_control_serve(const char *endpoint, _Atomic int *stop,
                               void (*answer)(void *arg, const char *request, char *reply, size_t reply_size),
                               void (*after)(void *arg), int (*idle)(void *arg), void *arg)
{
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_REP) : NULL;
    int64_t max_msg = NODE_CONTROL_MAX_REQUEST;
    int linger = 0, timeout = 100;
    char req[NODE_CONTROL_MAX_REQUEST + 1], *reply = malloc(NODE_CONTROL_MAX_REPLY);

    pthread_setname_np(pthread_self(), "rk-control"); /* top -H, perf, gdb */
    if (!sock || !reply || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout) || zmq_bind(sock, endpoint)) {
        log_msg(LOG_ERROR, "control endpoint unavailable", "endpoint=%s error=\"%s\"", endpoint,
                zmq_strerror(zmq_errno()));
        goto out;
    }
    while (!atomic_load(stop)) {
        int len = zmq_recv(sock, req, NODE_CONTROL_MAX_REQUEST, 0);
        if (len < 0) {
            idle_step(sock, idle, arg, &timeout); /* timeout: look at stop again */
            continue;
        }
        req[len < NODE_CONTROL_MAX_REQUEST ? len : NODE_CONTROL_MAX_REQUEST] = '\0';
        reply[0] = '\0';
        answer(arg, req, reply, NODE_CONTROL_MAX_REPLY);
        zmq_send(sock, reply, strlen(reply), 0);
        if (after)
            after(arg);
        idle_step(sock, idle, arg, &timeout); /* when its next step is due */
    }
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    free(reply);
}

/* A standby's status reply: the text its main thread made last
 * (standby_status). */
static void standby_status_reply(struct node *n, char *reply, size_t reply_size)
{
    pthread_mutex_lock(&n->lock);
    snprintf(reply, reply_size, "%s", n->status_text ? n->status_text : "error no status yet (out of memory)");
    pthread_mutex_unlock(&n->lock);
}

/* A standby's "snapshot" and "checkpoint" (serve_request: at what it has
 * applied), refused while a bootstrap replaces its store. */
static void standby_answer(struct node *n, const char *req, char *reply, size_t reply_size)
{
    int ask = strcmp(req, "snapshot") == 0 || strcmp(req, "snapshot whole") == 0 ? REQ_SNAPSHOT
              : strcmp(req, "checkpoint") == 0                                   ? REQ_CHECKPOINT
                                                                                 : 0;

    if (!ask)
        snprintf(reply, reply_size, "error %.200s is not served by a standby", req);
    else if (atomic_load(&n->bootstrapping))
        snprintf(reply, reply_size, "error the standby is bootstrapping from a checkpoint (no whole state "
                                    "yet); try again once it follows");
    else
        serve_request(n, ask, now_ns(), reply, reply_size);
}

/* The control loop's answers, for every role: "status" (and its old name
 * "status-json"), "promote" and "promote force" (a standby's),
 * "snapshot", "snapshot whole" and "checkpoint"; a primary's other requests through
 * primary_answer. */
static void control_answer(void *arg, const char *req, char *reply, size_t reply_size)
{
    struct node *n = arg;

    if (strcmp(req, "status") == 0 || strcmp(req, "status-json") == 0) {
        if (n->role == ROLE_STANDBY)
            standby_status_reply(n, reply, reply_size);
        else
            status_json(n, reply, reply_size);
    } else if (strcmp(req, "promote") == 0 || strcmp(req, "promote force") == 0) {
        if (n->role == ROLE_STANDBY)
            standby_promote_answer(n, req[7] != '\0', reply, reply_size);
        else
            snprintf(reply, reply_size, "error this node is a primary already (epoch %" PRIu64 ")", n->epoch);
    } else if (n->role == ROLE_STANDBY)
        standby_answer(n, req, reply, reply_size);
    else
        primary_answer(n, req, reply, reply_size);
}

/* After a reply has gone: what a primary's snapshot no longer needs (a
 * standby's: nothing). */
static void control_after(void *arg)
{
    snapshot_after_reply(arg);
}

static int control_idle(void *arg)
{
    return snapshot_fold_ahead(arg);
}

static void *control_main(void *arg)
{
    struct node *n = arg;

    node_control_serve(n->endpoint, &n->stop, control_answer, control_after, control_idle, n);
    return NULL;
}

/* Starts the control thread on ipc://DIR/control.sock (a socket file
 * left by an earlier run is removed: we hold the data directory's lock).
 * 0 or an errno value. */
int control_start(struct node *n, pthread_t *t)
{
    char path[PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/control.sock", n->c->data_dir);
    unlink(path);
    node_control_endpoint(n->c->data_dir, n->endpoint, sizeof n->endpoint);
    return start_thread(t, control_main, n);
}

/* ------------------------------------------------------------ run */

/* Every role's start: signals, log level, the node's locks. */
void node_begin(struct node *n)
{
    catch_signals();
    log_set_level(n->c->log_level);
    pthread_mutex_init(&n->lock, NULL);
    node_cond_init(&n->journal_cond);
    node_cond_init(&n->apply_cond);
    node_cond_init(&n->ckpt_cond);
    atomic_store(&n->start_ns, now_ns());
    notify_init(&n->notify);
}

int node_run(const struct node_config *c)
{
    if (c->repl_publish[0] || c->repl_serve[0] || strcmp(c->role, "primary") != 0) {
        log_msg(LOG_ERROR, "replication is configured but this program has no replicator",
                "hint=\"run it with ringkeep node\"");
        return 1;
    }
    return run_primary(c, NULL, 0, NULL);
}

static int node_rejoin(const struct node_config *c, int at_start);
static int promote_role(const struct node_config *c, struct node_handover *open);

/* Closes what a handover still holds. */
static void handover_close(struct node_handover *h)
{
    applier_close(h->a);
    store_close(h->s);
    h->a = NULL;
    h->s = NULL;
}

/* A primary, with its replicator when [replication] publish is set; on
 * open's store and applier when it holds them (a live promotion).  One
 * that stepped down (NODE_EXIT_FENCED) with on_higher_epoch = rejoin goes
 * on as a standby of the cluster's other nodes (node_rejoin). */
static int primary_role(const struct node_config *c, int promote, struct node_handover *open)
{
    struct repl_primary *p = NULL;
    int rc = 1;

    if (!c->repl_publish[0] || repl_primary_open(c, &p) == 0)
        rc = run_primary(c, p, promote, open);
    repl_primary_close(p);
    handover_close(open);
    /* with [ha], a primary that stepped down always rejoins: etcd decides
     * who leads, and this node may be elected again */
    return rc == NODE_EXIT_FENCED && (c->rejoin_on_higher_epoch || c->ha_etcd[0]) && !node_signal
               ? node_rejoin(c, 0)
               : rc;
}

/* The standby a stepped-down primary becomes: its own configuration with
 * role = standby (node_config_check refused on_higher_epoch = rejoin and
 * [ha] without primary_publish, primary_serve and node_id); with [ha],
 * also a configured primary at start (at_start), until it is elected. */
static int node_rejoin(const struct node_config *c, int at_start)
{
    struct node_config *sc = malloc(sizeof *sc);
    struct node_handover open = {0};
    char err[1024] = "";
    int rc;

    if (!sc)
        fatal("cannot rejoin as a standby", strerror(ENOMEM));
    *sc = *c;
    snprintf(sc->role, sizeof sc->role, "standby");
    rc = node_config_check(sc, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot rejoin as a standby", "error=\"%s\"", err);
        free(sc);
        return NODE_EXIT_FENCED;
    }
    if (at_start)
        log_msg(LOG_INFO, "starting as a standby: etcd elects the primary ([ha])", "primary_serve=%s",
                sc->repl_primary_serve);
    else
        log_msg(LOG_WARN, "rejoining as a standby of the new primary", "primary_serve=%s", sc->repl_primary_serve);
    rc = run_standby(sc, &open);
    /* promoted again: the primary's role, in a new epoch, on the open store */
    if (rc == NODE_PROMOTE)
        rc = promote_role(sc, &open);
    handover_close(&open);
    free(sc);
    return rc;
}

int node_promote_config(const struct node_config *c, struct node_config *out, char *err, size_t err_size)
{
    if (strcmp(c->role, "standby") != 0) {
        snprintf(err, err_size, "only a standby is promoted ([node] role = %s)", c->role);
        return RK_EINVAL;
    }
    *out = *c;
    snprintf(out->role, sizeof out->role, "primary");
    if (!out->ring_name[0]) {
        snprintf(err, err_size, "a standby is promoted only when its configuration names the ring it will "
                                "own ([ring] name, --ring)");
        return RK_EINVAL;
    }
    return node_config_check(out, err, err_size);
}

/* The primary's role for standby configuration c, in a new epoch: on
 * open's store and applier (a live promotion), or on the data directory
 * opened anew. */
static int promote_role(const struct node_config *c, struct node_handover *open)
{
    struct node_config *pc = malloc(sizeof *pc);
    char err[1024] = "";
    int rc = pc ? node_promote_config(c, pc, err, sizeof err) : ENOMEM;

    if (rc) {
        log_msg(LOG_ERROR, "cannot promote", "error=\"%s\"", err[0] ? err : strerror(rc));
        free(pc);
        handover_close(open);
        return 1;
    }
    rc = primary_role(pc, 1, open);
    free(pc);
    return rc;
}

/* [ha]: the failover thread for the life of the process (node_ha). */
static int ha_begin(const struct node_config *c)
{
    return c->ha_etcd[0] ? ha_start(c, &node_ha) : 0;
}

static void ha_end(void)
{
    ha_stop(node_ha);
    node_ha = NULL;
}

int node_promote(const struct node_config *c)
{
    struct node_handover none = {0};
    int rc = ha_begin(c);

    if (rc)
        return 1;
    rc = promote_role(c, &none);
    ha_end();
    return rc;
}

int repl_node_run(const struct node_config *c)
{
    struct node_handover open = {0};
    int rc = ha_begin(c);

    if (c->repl_min_replicas && !c->curve && c->insecure_acks)
        log_msg(LOG_WARN,
                "acknowledgements are not authenticated (insecure_acks = yes without curve): any peer that "
                "reaches the serve endpoint can ack under a standby's name and make RK_REPLICATED return "
                "for records no standby holds",
                "min_replicas=%" PRIu32, c->repl_min_replicas);
    if (rc)
        return 1;
    if (strcmp(c->role, "standby") != 0 && !c->ha_etcd[0]) {
        rc = primary_role(c, 0, &open);
        ha_end();
        return rc;
    }
    if (strcmp(c->role, "standby") != 0) {
        /* [ha]: etcd decides who leads and hands out the epochs.  A node
         * configured as the primary starts as a standby too (it follows
         * whoever leads, or waits) and is elected like any other, first
         * among equals; it never begins an epoch of its own, which would
         * depose the leader through the replication protocol */
        rc = node_rejoin(c, 1);
        ha_end();
        return rc;
    }
    rc = run_standby(c, &open);
    /* a promotion in the same process: the standby has journaled and
     * applied all it holds and hands its store and applier over open; the
     * primary's role goes on with them in a new epoch */
    if (rc == NODE_PROMOTE)
        rc = promote_role(c, &open);
    else
        handover_close(&open);
    ha_end();
    return rc;
}
