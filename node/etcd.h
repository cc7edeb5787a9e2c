/* etcd.h -- a small client of etcd's v3 JSON gateway (etcd 3.4: POST
 * /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke,
 * /v3/lease/timetolive, /v3/kv/range, /v3/kv/put, /v3/kv/deleterange,
 * /v3/kv/txn, /v3/watch; keys and values travel in base64), over libcurl, JSON with
 * Jansson.  Only what automatic failover needs (node/ha.c) and `ringkeep
 * cluster status` reads.  Private to ringkeep.
 *
 * A client holds one curl handle: one thread uses it at a time.  Each
 * call tries the endpoints in turn, starting at the one that answered
 * last, each within the client's timeout; every call either completes or
 * fails with a message (etcd_error) that names the endpoint and why. */
#ifndef RK_NODE_ETCD_H
#define RK_NODE_ETCD_H

#include <stddef.h>
#include <stdint.h>

typedef struct etcd etcd;

/* Return values: 0; ENOMEM; EHOSTUNREACH (no endpoint answered within the
 * timeout); EPROTO (an answer that is not what the gateway sends, or an
 * error etcd reported); ENOENT (the lease does not exist or expired). */

/* A client of the comma-separated URL list urls ("http://127.0.0.1:2379,
 * http://..."), each request bounded by timeout_ms.  *out is the
 * caller's: etcd_close. */
int etcd_open(const char *urls, uint32_t timeout_ms, etcd **out);
void etcd_close(etcd *e); /* NULL is a no-op */
void etcd_set_timeout(etcd *e, uint32_t timeout_ms);

/* Why the last call failed (a NUL-terminated message; "" after success). */
const char *etcd_error(const etcd *e);

/* Leases.  ttl_s is etcd's: whole seconds, at least its minimum TTL. */
int etcd_lease_grant(etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl_s);
/* Renews lease id: *ttl_s is its TTL from now; ENOENT when it expired. */
int etcd_lease_keepalive(etcd *e, int64_t id, int64_t *ttl_s);
int etcd_lease_revoke(etcd *e, int64_t id); /* ENOENT: it was gone already */
/* The lease's remaining TTL (seconds, as etcd rounds it); ENOENT when gone. */
int etcd_lease_time_left(etcd *e, int64_t id, int64_t *ttl_s);

struct etcd_kv {
    char *key;   /* NUL-terminated */
    char *value; /* NUL-terminated (a value holding NUL bytes is refused: EPROTO) */
    int64_t create_revision, mod_revision, lease;
};

/* The keys equal to key, or starting with it when prefix: *kvs (malloc'd,
 * etcd_kvs_free) and *n_kvs; *revision is the store's revision then. */
int etcd_range(etcd *e, const char *key, int prefix, struct etcd_kv **kvs, size_t *n_kvs, int64_t *revision);
void etcd_kvs_free(struct etcd_kv *kvs, size_t n_kvs);

/* Puts key = value, attached to lease (0: none). */
int etcd_put(etcd *e, const char *key, const char *value, int64_t lease);

/* A transaction: when every compare holds, the puts (and deletes) are
 * made, atomically; *succeeded says which. */
enum etcd_target { ETCD_CREATE_REVISION, ETCD_MOD_REVISION, ETCD_VALUE };
struct etcd_compare {
    const char *key;
    enum etcd_target target; /* the key's create or mod revision equals revision (0: the key is
                                absent), or its value equals value */
    int64_t revision;
    const char *value;
};
struct etcd_op {
    const char *key;
    const char *value; /* NULL: delete key */
    int64_t lease;     /* a put's lease, 0: none */
};
/* *revision: the store's revision after it (a key the transaction put was
 * created or modified at it); NULL when not wanted. */
int etcd_txn(etcd *e, const struct etcd_compare *cmp, size_t n_cmp, const struct etcd_op *ops, size_t n_ops,
             int *succeeded, int64_t *revision);

/* Watches key (one key) from now on, and blocks: on_change(arg) is called
 * (on this thread) once the watch is in place, and after each answer that
 * carries changes of the key; what changed before the watch was in place
 * is not told, the caller reads the key after the first call.  A stream
 * lasts at most max_s seconds.  Returns 0 once etcd_watch_cancel was
 * called (at once if it was called before), else when the stream ends:
 * EHOSTUNREACH (no endpoint answered, the connection ended, or max_s),
 * EPROTO (etcd ended the watch), ENOMEM; the caller watches again.  The
 * client is the watching thread's alone (but for etcd_watch_cancel). */
int etcd_watch(etcd *e, const char *key, int64_t max_s, void (*on_change)(void *arg), void *arg);
/* From any thread: etcd_watch returns 0 soon, and every later call at once. */
void etcd_watch_cancel(etcd *e);

#endif
