/* config.h -- the node's configuration: an INI file read with libinih,
 * then command-line overrides, then checks (private to ringkeep).
 *
 * Every key is known and validated: an unknown section or key, a bad value
 * or a missing directory is a one-line error naming the file, the line and
 * the key ("node.ini:12: [drain] batch_records = abc: not a number"), and
 * the node does not start.  config/primary.ini documents every key. */
#ifndef RK_CONFIG_H
#define RK_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringkeep.h"

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

#define CONFIG_ENDPOINT_MAX 255 /* a ZeroMQ endpoint in [replication], or a list of them */
#define CONFIG_NODES_MAX 16     /* endpoints in primary_publish and primary_serve */
#define CONFIG_Z85_KEY 40       /* a CURVE key in Z85 text */
#define CONFIG_LISTEN_MAX 63    /* [metrics] listen: "ADDRESS:PORT" */

struct node_config {
    char file[PATH_MAX]; /* the INI file read, "" if none */
    /* [node] */
    char role[16];                       /* role: "primary" or "standby" */
    char data_dir[PATH_MAX];             /* data_dir: must exist */
    char data_dir_origin[PATH_MAX + 16]; /* where data_dir was set ("PATH:LINE" or the
                                            origin given to node_config_set), for
                                            node_config_check's messages; "" if unset */
    int log_level;                       /* log_level: debug|info|warn|error */
    /* [ring] */
    char ring_name[RK_NAME_MAX + 1]; /* name */
    uint64_t ring_capacity;          /* capacity: bytes, power of two, K/M/G */
    uint32_t unblock_timeout_ms;     /* unblock_timeout_ms */
    /* [drain] */
    uint32_t batch_records; /* batch_records: cut a batch at this many frames */
    uint64_t batch_bytes;   /* batch_bytes: ... or this many bytes */
    uint32_t batch_time_us; /* batch_time_us: ... or this long after its first frame */
    int zstd_level;         /* zstd_level: 1..19 */
    /* [apply] */
    uint32_t max_lag_entries; /* max_lag_entries: drain pauses when apply is this far behind */
    uint64_t max_lag_bytes;   /* max_lag_bytes: ... or this many ring bytes behind (0: no bound) */
    uint32_t max_lag_ms;      /* max_lag_ms: ... or more than this much of apply's work behind (0: no bound);
                                 with min_replicas > 0, the counted standbys' apply too */
    /* [checkpoint] */
    uint32_t ckpt_every_seconds; /* every_seconds: take one this often (0: never by time) */
    uint64_t ckpt_every_records; /* every_records: ... and after this many records (0: never) */
    uint32_t ckpt_keep;          /* keep: checkpoints kept, newest first */
    uint32_t ckpt_keep_hourly;   /* keep_hourly: also the newest of each of the last N hours */
    uint32_t ckpt_keep_daily;    /* keep_daily: also the newest of each of the last N days */
    uint64_t ckpt_every_heights; /* every_heights: after this many heights of height_producer (0: never) */
    char ckpt_height_producer[RK_NAME_MAX + 1]; /* height_producer */
    bool trim_journal;           /* trim_journal: remove journal entries no kept checkpoint needs */
    /* [storage] */
    uint32_t cache_mb; /* cache_mb: Berkeley DB cache */
    /* [replication] (endpoints: "" when unset) */
    char repl_publish[CONFIG_ENDPOINT_MAX + 1];         /* publish: primary's PUB bind */
    char repl_serve[CONFIG_ENDPOINT_MAX + 1];           /* serve: primary's ROUTER bind */
    /* primary_publish and primary_serve: the cluster's nodes, a comma-separated list each, paired by
     * position (node_config_endpoints); a standby's SUB and DEALER connect to each */
    char repl_primary_publish[CONFIG_ENDPOINT_MAX + 1];
    char repl_primary_serve[CONFIG_ENDPOINT_MAX + 1];
    char repl_node_id[RK_NAME_MAX + 1];                 /* node_id: this node's name among standbys */
    bool rejoin_on_higher_epoch;                        /* on_higher_epoch: rejoin (a primary that steps down
                                                           follows the new primary) or exit */
    uint32_t repl_min_replicas;                         /* min_replicas: acks that make a record replicated */
    uint32_t repl_heartbeat_ms;                         /* heartbeat_ms: heartbeat interval */
    bool curve;                                         /* curve: CURVE on every replication socket */
    char curve_secret_key[CONFIG_Z85_KEY + 1];          /* curve_secret_key: this node's (Z85) */
    char curve_public_key[CONFIG_Z85_KEY + 1];          /* curve_public_key: this node's (Z85) */
    char curve_server_key[CONFIG_Z85_KEY + 1];          /* curve_server_key: a standby: the primary's public key */
    char curve_authorized_keys[PATH_MAX];               /* authorized_keys: a primary: file of client public keys */
    bool insecure_acks;                                 /* insecure_acks: min_replicas > 0 without curve allowed
                                                           (acks unauthenticated; warned at every start) */
    /* [ha] (automatic failover through etcd; ha_etcd "": off, nothing changes) */
    char ha_etcd[CONFIG_ENDPOINT_MAX + 1];  /* etcd: etcd client URLs, comma-separated */
    char ha_cluster[RK_NAME_MAX + 1];       /* cluster: keys live under /ringkeep/<cluster>/ */
    char ha_name[RK_NAME_MAX + 1];          /* name: this node's member name ("": node_id) */
    uint32_t ha_ttl_ms;                     /* ttl_ms: the leader lease */
    uint32_t ha_max_lag_entries;            /* max_lag_entries: a standby further behind is not eligible */
    /* [metrics] */
    char metrics_listen[CONFIG_LISTEN_MAX + 1]; /* listen: "IPV4:PORT" or "[IPV6]:PORT" of the Prometheus
                                                   endpoint; "" (the default): nothing listens */
};

/* [ha] name, or node_id when it is not set. */
static inline const char *node_config_ha_name(const struct node_config *c)
{
    return c->ha_name[0] ? c->ha_name : c->repl_node_id;
}

/* Fills c with the defaults (documented in config/primary.ini).  data_dir
 * and the ring name have no default: they are "" until set. */
void node_config_defaults(struct node_config *c);

/* Reads path into c (over what c holds).  On error writes
 * "PATH:LINE: [section] key = value: reason" to err and returns RK_EINVAL
 * (or an errno when the file cannot be read).
 *   - only the first error is reported; c is left unchanged on any error;
 *   - a line that libinih cannot parse gives "PATH:LINE: syntax error";
 *   - a key given twice is an error naming both lines;
 *   - lines may be indented (there are no continuation lines), comments
 *     start a line with '#' or ';', or follow a value after " ;";
 *   - a line is at most 198 bytes (libinih's line buffer). */
int node_config_load(const char *path, struct node_config *c, char *err, size_t err_size);

/* Sets one key, as the file would ("drain", "batch_records", "100"); for
 * command-line overrides.  origin names where the value came from in
 * error messages ("--set": "--set: [drain] batch_records = x: not a number");
 * NULL means "--set".  Spaces around value are ignored, as in the file.
 * Returns 0 or RK_EINVAL; c is unchanged on error. */
int node_config_set(struct node_config *c, const char *section, const char *key, const char *value,
                    const char *origin, char *err, size_t err_size);

/* The endpoints of list ([replication] primary_publish or primary_serve,
 * checked when set): copies the first max of them, blanks around each
 * removed, into out[0..] and returns how many the list holds (0 when
 * empty).  out may be NULL when max is 0. */
uint32_t node_config_endpoints(const char *list, char (*out)[CONFIG_ENDPOINT_MAX + 1], uint32_t max);

struct sockaddr_storage;

/* Parses a [metrics] listen value: a literal IPv4 address and a port
 * ("127.0.0.1:9187") or a bracketed IPv6 one ("[::1]:9187"), port 1 to
 * 65535; no host names (the node resolves none).  Fills *out (AF_INET or
 * AF_INET6) when out is not NULL.  0, or RK_EINVAL with the reason in
 * why. */
int node_config_listen_addr(const char *text, struct sockaddr_storage *out, char *why, size_t why_size);

/* Checks what only makes sense once everything is set: data_dir exists and
 * is a directory, ring name valid (a primary's), role supported (and every
 * number in its range, for a struct filled by code), [replication] keys
 * consistent with the role (a standby needs primary_publish, primary_serve
 * and node_id; primary_publish and primary_serve list as many endpoints;
 * publish and serve go together; min_replicas > 0 needs them, and curve =
 * yes or insecure_acks = yes;
 * curve = yes needs the role's whole key set, and keys need curve = yes;
 * on_higher_epoch = rejoin needs what a standby needs; [ha] needs cluster,
 * a name, and what both a primary and a standby need, ring name included).  Returns 0 or RK_EINVAL with a
 * one-line reason in err. */
int node_config_check(const struct node_config *c, char *err, size_t err_size);

#endif
