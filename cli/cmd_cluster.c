/* cmd_cluster.c -- `ringkeep cluster status -c FILE [--json]`: what etcd
 * holds for the configuration's [ha] cluster (node/ha.c writes it): the
 * leader key, the epoch etcd handed out last, and every member's record
 * with its lease's time left.  One range read and one time-to-live per
 * member: it never changes anything in etcd. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "node/etcd.h"
#include "persist/config.h"

#define CLUSTER_TIMEOUT_MS 2000 /* each request to etcd */

/* The string member key of o escaped for a terminal (cli_escape: a name
 * from etcd is anyone's bytes, and a newline or an escape sequence in it
 * must not forge a line or recolour the screen) in buf; absent: "?". */
static const char *text_of(const json_t *o, const char *key, char *buf, size_t size)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_string(v))
        return "?";
    return cli_escape(json_string_value(v), json_string_length(v), buf, size);
}

static void cluster_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep cluster status -c FILE [--json]\n"
            "           the [ha] cluster of FILE as etcd sees it: who leads (the leader key), the\n"
            "           last epoch etcd handed out, and each member's role, epoch, seq (last entry\n"
            "           held durably), lag (entries behind the most advanced), whether it may be\n"
            "           elected, and its lease's time left (seconds, as etcd rounds them).\n"
            "           --json: {\"cluster\",\"leader\":{name,epoch}|null,\"epoch\",\"members\":[{name,\n"
            "           role,epoch,seq,lag,eligible,pid,lease_ttl_s}]}.  Exit 1 when etcd does not\n"
            "           answer (the reason on stderr)\n");
}

int cmd_cluster(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *file = NULL;
    struct node_config *c = NULL;
    etcd *e = NULL;
    struct etcd_kv *kvs = NULL;
    size_t n_kvs = 0;
    int64_t rev = 0;
    int json = 0, rc = 1, ch;
    char prefix[RK_NAME_MAX + 16], cluster_text[4 * sizeof c->ha_cluster], name_text[256], role_text[64];
    json_t *out = NULL, *members = NULL, *leader = json_null();

    if (argc < 2)
        return cli_usage(cluster_usage, 0);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
        return cli_usage(cluster_usage, 1);
    if (strcmp(argv[1], "status") != 0)
        return cli_usage(cluster_usage, 0);
    optind = 0;
    while ((ch = getopt_long(argc - 1, argv + 1, "c:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(cluster_usage, ch == 'h');
        if (ch == 'c')
            file = optarg;
        else
            json = 1;
    }
    if (!file || optind != argc - 1)
        return cli_usage(cluster_usage, 0);
    if (!(c = cli_load_config("cluster", file)))
        return 2;
    if (!c->ha_etcd[0]) {
        fprintf(stderr, "ringkeep cluster: %s has no [ha] section (etcd): automatic failover is off\n", file);
        free(c);
        return 2;
    }
    snprintf(prefix, sizeof prefix, "/ringkeep/%s/", c->ha_cluster);
    rc = etcd_open(c->ha_etcd, CLUSTER_TIMEOUT_MS, &e);
    if (!rc)
        rc = etcd_range(e, prefix, 1, &kvs, &n_kvs, &rev);
    if (rc) {
        fprintf(stderr, "ringkeep cluster: cannot read the cluster from etcd: %s\n",
                e ? etcd_error(e) : "out of memory");
        rc = 1;
        goto out;
    }
    out = json_pack("{s:s, s:o, s:I}", "cluster", c->ha_cluster, "members", json_array(), "epoch",
                    (json_int_t)0);
    members = out ? json_object_get(out, "members") : NULL;
    for (size_t i = 0; out && i < n_kvs; i++) {
        const char *rest = kvs[i].key + strlen(prefix);
        json_t *val = json_loads(kvs[i].value, 0, NULL);
        if (strcmp(rest, "leader") == 0 && json_is_object(val)) {
            json_decref(leader);
            leader = json_incref(val);
        } else if (strcmp(rest, "epoch") == 0) {
            json_object_set_new(out, "epoch", json_integer((json_int_t)strtoll(kvs[i].value, NULL, 10)));
        } else if (strncmp(rest, "members/", 8) == 0 && json_is_object(val)) {
            int64_t ttl = -1;
            if (etcd_lease_time_left(e, kvs[i].lease, &ttl) != 0)
                ttl = -1;
            json_object_set_new(val, "lease_ttl_s", json_integer((json_int_t)ttl));
            json_array_append(members, val);
        }
        json_decref(val);
    }
    if (!out || json_object_set(out, "leader", leader)) {
        fprintf(stderr, "ringkeep cluster: out of memory\n");
        rc = 1;
        goto out;
    }
    if (json) {
        rc = cli_print_json(out);
        out = NULL;
        goto out;
    }
    printf("cluster %s: leader %s (epoch %" JSON_INTEGER_FORMAT
           "), last epoch handed out %" JSON_INTEGER_FORMAT "\n",
           cli_escape(c->ha_cluster, strlen(c->ha_cluster), cluster_text, sizeof cluster_text),
           json_is_object(leader) ? text_of(leader, "name", name_text, sizeof name_text) : "none",
           json_integer_value(json_object_get(leader, "epoch")),
           json_integer_value(json_object_get(out, "epoch")));
    printf("%-20s %-8s %8s %12s %8s %9s %10s\n", "member", "role", "epoch", "seq", "lag", "eligible",
           "lease_ttl_s");
    for (size_t i = 0; i < json_array_size(members); i++) {
        json_t *m = json_array_get(members, i);
        printf("%-20s %-8s %8" JSON_INTEGER_FORMAT " %12" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
               " %9s %10" JSON_INTEGER_FORMAT "\n",
               text_of(m, "name", name_text, sizeof name_text),
               text_of(m, "role", role_text, sizeof role_text),
               json_integer_value(json_object_get(m, "epoch")), json_integer_value(json_object_get(m, "seq")),
               json_integer_value(json_object_get(m, "lag")),
               json_is_true(json_object_get(m, "eligible")) ? "yes" : "no",
               json_integer_value(json_object_get(m, "lease_ttl_s")));
    }
    rc = 0;
out:
    json_decref(out);
    json_decref(leader);
    etcd_kvs_free(kvs, n_kvs);
    etcd_close(e);
    free(c);
    return rc;
}
