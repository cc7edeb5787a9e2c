/* etcd.c -- the client of etcd's v3 JSON gateway (etcd.h).
 *
 * Every call is one POST of a JSON body to one endpoint; a transport
 * failure (refused, timed out, no answer) moves to the next endpoint, an
 * answer ends the call.  The gateway writes 64-bit numbers as strings and
 * keys and values in base64 (RFC 4648, with padding); an error comes back
 * as {"error": ..., "message": ..., "code": N}.  libcurl has no public
 * base64: persist/json_bytes.h's (the one `checkpoint export` writes) does
 * it, the decoder strict (canonical padding; etcd writes no other).
 *
 * Threads: one thread per client at a time (a curl easy handle is not
 * shared); curl_global_init runs once (pthread_once) before any handle.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/etcd.h"
#include "persist/config.h"
#include "persist/json_bytes.h"

#define ETCD_MAX_ANSWER (8u << 20) /* an answer larger than this is refused (EPROTO) */

struct etcd {
    CURL *curl;
    CURLM *multi;         /* etcd_watch's (made by it, on first use) */
    _Atomic int cancel;   /* etcd_watch_cancel was called */
    pthread_mutex_t lock; /* multi, between etcd_watch making it and etcd_watch_cancel waking it */
    char urls[CONFIG_NODES_MAX][CONFIG_ENDPOINT_MAX + 1];
    uint32_t n_urls;
    uint32_t current; /* the endpoint that answered last */
    uint32_t timeout_ms;
    char *answer; /* the last answer's body (NUL-terminated) */
    size_t answer_len;
    int answer_too_big;
    char err[512];
};

/* ------------------------------------------------------------ base64 */

/* Decodes text into a malloc'd NUL-terminated string (*out); EPROTO when
 * text is not base64 or the bytes hold a NUL, ENOMEM. */
static int b64_decode(const char *text, char **out)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = base64_decode(text, strlen(text), &buf, &n);

    *out = NULL;
    if (rc == 0 && memchr(buf, '\0', n))
        rc = EPROTO;
    if (rc) {
        free(buf);
        return rc == ENOMEM ? ENOMEM : EPROTO;
    }
    *out = (char *)buf;
    return 0;
}

/* ------------------------------------------------------------ transport */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    etcd *e = arg;
    size_t len = size * nmemb;
    char *grown;

    if (e->answer_len + len > ETCD_MAX_ANSWER) {
        e->answer_too_big = 1;
        return 0; /* curl stops: CURLE_WRITE_ERROR */
    }
    grown = realloc(e->answer, e->answer_len + len + 1);
    if (!grown)
        return 0;
    e->answer = grown;
    memcpy(e->answer + e->answer_len, data, len);
    e->answer_len += len;
    e->answer[e->answer_len] = '\0';
    return len;
}

int etcd_open(const char *urls, uint32_t timeout_ms, etcd **out)
{
    etcd *e = calloc(1, sizeof *e);

    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (!e)
        return ENOMEM;
    e->n_urls = node_config_endpoints(urls, e->urls, CONFIG_NODES_MAX);
    if (e->n_urls > CONFIG_NODES_MAX)
        e->n_urls = CONFIG_NODES_MAX;
    e->timeout_ms = timeout_ms;
    pthread_mutex_init(&e->lock, NULL);
    e->curl = curl_init_rc == CURLE_OK ? curl_easy_init() : NULL;
    if (!e->curl || e->n_urls == 0) {
        int rc = e->n_urls == 0 ? EINVAL : ENOMEM;
        etcd_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

void etcd_close(etcd *e)
{
    if (!e)
        return;
    if (e->multi)
        curl_multi_cleanup(e->multi);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    pthread_mutex_destroy(&e->lock);
    free(e->answer);
    free(e);
}

void etcd_set_timeout(etcd *e, uint32_t timeout_ms)
{
    e->timeout_ms = timeout_ms;
}

const char *etcd_error(const etcd *e)
{
    return e->err;
}

/* POSTs body (stolen) to path at each endpoint in turn until one answers
 * with JSON: *answer (a new reference).  An answer holding "error" is
 * EPROTO with etcd's message (and *answer NULL), unless it is "lease not
 * found": ENOENT.  Any other answer that is not HTTP 2xx is not etcd's:
 * the next endpoint is tried. */
static int post(etcd *e, const char *path, json_t *body, json_t **answer)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char url[CONFIG_ENDPOINT_MAX + 64];
    int rc = EHOSTUNREACH;

    json_decref(body);
    *answer = NULL;
    e->err[0] = '\0';
    if (!text) {
        snprintf(e->err, sizeof e->err, "out of memory");
        return ENOMEM;
    }
    for (uint32_t tried = 0; tried < e->n_urls && rc == EHOSTUNREACH; tried++) {
        uint32_t i = (e->current + tried) % e->n_urls;
        long status = 0;
        CURLcode cc;

        snprintf(url, sizeof url, "%s%s", e->urls[i], path);
        free(e->answer);
        e->answer = NULL;
        e->answer_len = 0;
        e->answer_too_big = 0;
        curl_easy_reset(e->curl);
        curl_easy_setopt(e->curl, CURLOPT_URL, url);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
        curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
        curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
        curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
        curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        cc = curl_easy_perform(e->curl);
        if (cc != CURLE_OK) {
            snprintf(e->err, sizeof e->err, "etcd at %s: %s%s", e->urls[i], curl_easy_strerror(cc),
                     e->answer_too_big ? " (answer too large)" : "");
            continue; /* the next endpoint */
        }
        curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
        json_error_t jerr;
        json_t *got = json_loadb(e->answer ? e->answer : "", e->answer_len, 0, &jerr);
        if (!got || !json_is_object(got)) {
            snprintf(e->err, sizeof e->err, "etcd at %s%s: HTTP %ld, not the JSON gateway's answer: %.120s",
                     e->urls[i], path, status, e->answer ? e->answer : "");
            json_decref(got);
            /* a proxy or another server: try the next one */
            continue;
        }
        json_t *error = json_object_get(got, "error");
        if (error) {
            e->current = i;
            const char *msg = json_string_value(json_object_get(got, "message"));
            if (!msg)
                msg = json_string_value(error);
            snprintf(e->err, sizeof e->err, "etcd at %s%s: %s", e->urls[i], path, msg ? msg : "error");
            rc = msg && strstr(msg, "lease not found") ? ENOENT : EPROTO;
            json_decref(got);
            break;
        }
        if (status < 200 || status > 299) {
            /* JSON, no "error", not a success: not the gateway's answer (a
             * proxy's); its missing fields would read as zeros -- an empty
             * range, a leader key gone.  Tried as a server that is not etcd */
            snprintf(e->err, sizeof e->err, "etcd at %s%s: HTTP %ld without an error: %.120s", e->urls[i],
                     path, status, e->answer ? e->answer : "");
            json_decref(got);
            rc = EHOSTUNREACH;
            continue;
        }
        e->current = i;
        *answer = got;
        rc = 0;
    }
    free(text);
    return rc;
}

/* A 64-bit number the gateway writes as a string (or, for small ones, a
 * JSON integer); absent: 0. */
static int64_t json_i64(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);

    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static json_t *json_i64_string(int64_t v)
{
    char text[24];

    snprintf(text, sizeof text, "%" PRId64, v);
    return json_string(text);
}

/* "key": base64 of text, added to obj; -1 when out of memory. */
static int set_b64(json_t *obj, const char *name, const char *text, size_t len)
{
    char *b = obj ? base64_encode(text, len) : NULL;
    int rc = b ? json_object_set_new(obj, name, json_string(b)) : -1;

    free(b);
    return rc;
}

static int bad_answer(etcd *e, const char *what)
{
    snprintf(e->err, sizeof e->err, "etcd's answer to %s is not what the v3 gateway sends", what);
    return EPROTO;
}

/* ------------------------------------------------------------ leases */

int etcd_lease_grant(etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl_s)
{
    json_t *ans = NULL;
    int rc = post(e, "/v3/lease/grant", json_pack("{s:o}", "TTL", json_i64_string(ttl_s)), &ans);

    if (rc)
        return rc;
    *id = json_i64(ans, "ID");
    *granted_ttl_s = json_i64(ans, "TTL");
    json_decref(ans);
    return *id && *granted_ttl_s > 0 ? 0 : bad_answer(e, "lease grant");
}

int etcd_lease_keepalive(etcd *e, int64_t id, int64_t *ttl_s)
{
    json_t *ans = NULL;
    int rc = post(e, "/v3/lease/keepalive", json_pack("{s:o}", "ID", json_i64_string(id)), &ans);

    if (rc)
        return rc;
    json_t *result = json_object_get(ans, "result");
    *ttl_s = json_i64(result, "TTL");
    json_decref(ans);
    if (!result)
        return bad_answer(e, "lease keepalive");
    if (*ttl_s <= 0) {
        snprintf(e->err, sizeof e->err, "lease %" PRIx64 " expired", (uint64_t)id);
        return ENOENT;
    }
    return 0;
}

int etcd_lease_revoke(etcd *e, int64_t id)
{
    json_t *ans = NULL;
    int rc = post(e, "/v3/lease/revoke", json_pack("{s:o}", "ID", json_i64_string(id)), &ans);

    json_decref(ans);
    return rc;
}

int etcd_lease_time_left(etcd *e, int64_t id, int64_t *ttl_s)
{
    json_t *ans = NULL;
    int rc = post(e, "/v3/lease/timetolive", json_pack("{s:o}", "ID", json_i64_string(id)), &ans);

    if (rc)
        return rc;
    *ttl_s = json_i64(ans, "TTL");
    json_decref(ans);
    return *ttl_s < 0 ? ENOENT : 0;
}

/* ------------------------------------------------------------ keys */

void etcd_kvs_free(struct etcd_kv *kvs, size_t n_kvs)
{
    for (size_t i = 0; kvs && i < n_kvs; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
    free(kvs);
}

int etcd_range(etcd *e, const char *key, int prefix, struct etcd_kv **kvs, size_t *n_kvs, int64_t *revision)
{
    json_t *body = json_object(), *ans = NULL, *list;
    size_t len = strlen(key);
    struct etcd_kv *out = NULL;
    size_t n = 0;
    int rc = set_b64(body, "key", key, len);

    *kvs = NULL;
    *n_kvs = 0;
    if (!rc && prefix) {
        /* the range [key, key with its last byte + 1): every key under it */
        char *end = strdup(key);
        if (end && len)
            end[len - 1]++;
        rc = end && len ? set_b64(body, "range_end", end, len) : -1;
        free(end);
    }
    if (rc) {
        json_decref(body);
        snprintf(e->err, sizeof e->err, "out of memory");
        return ENOMEM;
    }
    rc = post(e, "/v3/kv/range", body, &ans);
    if (rc)
        return rc;
    *revision = json_i64(json_object_get(ans, "header"), "revision");
    list = json_object_get(ans, "kvs");
    if (list && !json_is_array(list)) {
        json_decref(ans);
        return bad_answer(e, "range");
    }
    out = calloc(json_array_size(list) + 1, sizeof *out);
    if (!out) {
        json_decref(ans);
        return ENOMEM;
    }
    for (size_t i = 0; i < json_array_size(list); i++, n++) {
        json_t *kv = json_array_get(list, i);
        const char *k = json_string_value(json_object_get(kv, "key"));
        const char *v = json_string_value(json_object_get(kv, "value"));
        rc = k ? b64_decode(k, &out[n].key) : EPROTO;
        if (!rc)
            rc = b64_decode(v ? v : "", &out[n].value); /* an empty value is left out */
        if (rc) {
            n++;
            break;
        }
        out[n].create_revision = json_i64(kv, "create_revision");
        out[n].mod_revision = json_i64(kv, "mod_revision");
        out[n].lease = json_i64(kv, "lease");
    }
    json_decref(ans);
    if (rc) {
        etcd_kvs_free(out, n);
        return rc == EPROTO ? bad_answer(e, "range (a key or value)") : rc;
    }
    *kvs = out;
    *n_kvs = n;
    return 0;
}

/* A put request's body: key, value, lease. */
static json_t *put_body(const char *key, const char *value, int64_t lease)
{
    json_t *body = json_object();

    if (set_b64(body, "key", key, strlen(key)) || set_b64(body, "value", value, strlen(value)) ||
        (lease && json_object_set_new(body, "lease", json_i64_string(lease)))) {
        json_decref(body);
        return NULL;
    }
    return body;
}

int etcd_put(etcd *e, const char *key, const char *value, int64_t lease)
{
    json_t *ans = NULL;
    int rc = post(e, "/v3/kv/put", put_body(key, value, lease), &ans);

    json_decref(ans);
    return rc;
}

int etcd_txn(etcd *e, const struct etcd_compare *cmp, size_t n_cmp, const struct etcd_op *ops, size_t n_ops,
             int *succeeded, int64_t *revision)
{
    static const char *const targets[] = {"CREATE", "MOD", "VALUE"};
    static const char *const fields[] = {"create_revision", "mod_revision", "value"};
    json_t *body = json_object(), *compare = json_array(), *success = json_array(), *ans = NULL;
    int bad = !body || !compare || !success;

    *succeeded = 0;
    for (size_t i = 0; !bad && i < n_cmp; i++) {
        json_t *c = json_pack("{s:s, s:s}", "result", "EQUAL", "target", targets[cmp[i].target]);
        bad = !c || set_b64(c, "key", cmp[i].key, strlen(cmp[i].key)) ||
              (cmp[i].target == ETCD_VALUE
                   ? set_b64(c, fields[cmp[i].target], cmp[i].value, strlen(cmp[i].value))
                   : json_object_set_new(c, fields[cmp[i].target], json_i64_string(cmp[i].revision)));
        if (json_array_append_new(compare, c))
            bad = 1;
    }
    for (size_t i = 0; !bad && i < n_ops; i++) {
        json_t *req = NULL;
        if (ops[i].value) {
            req = put_body(ops[i].key, ops[i].value, ops[i].lease);
            req = req ? json_pack("{s:o}", "request_put", req) : NULL;
        } else {
            json_t *del = json_object();
            req = del && !set_b64(del, "key", ops[i].key, strlen(ops[i].key))
                      ? json_pack("{s:o}", "request_delete_range", del)
                      : (json_decref(del), NULL);
        }
        bad = !req || json_array_append_new(success, req);
    }
    if (bad) {
        json_decref(compare);
        json_decref(success);
    }
    /* set_new takes its reference even when it fails */
    if (bad || json_object_set_new(body, "compare", compare) ||
        json_object_set_new(body, "success", success)) {
        json_decref(body);
        snprintf(e->err, sizeof e->err, "out of memory");
        return ENOMEM;
    }
    int rc = post(e, "/v3/kv/txn", body, &ans);
    if (rc)
        return rc;
    *succeeded = json_is_true(json_object_get(ans, "succeeded"));
    if (revision)
        *revision = json_i64(json_object_get(ans, "header"), "revision");
    json_decref(ans);
    return 0;
}

/* ------------------------------------------------------------ watch */

/* A watch stream's state, between its body callback and etcd_watch. */
struct watch_stream {
    etcd *e;
    void (*on_change)(void *arg);
    void *arg;
    char *line; /* the answer's line not yet ended by '\n' */
    size_t len;
    int created;  /* etcd said the watch is in place */
    int canceled; /* etcd ended the watch (or answered with an error) */
};

/* One line of the stream: {"result": {"created": true | "events": [...] |
 * "canceled": true, ...}} or {"error": ...}. */
static void watch_line(struct watch_stream *w, const char *text, size_t len)
{
    json_t *got = json_loadb(text, len, 0, NULL);
    json_t *result = json_object_get(got, "result");

    if (!result || json_is_true(json_object_get(result, "canceled"))) {
        const char *why = json_string_value(json_object_get(result ? result : got, "cancel_reason"));
        if (!why)
            why = json_string_value(json_object_get(got, "message"));
        snprintf(w->e->err, sizeof w->e->err, "etcd ended the watch: %.200s",
                 why ? why : "(no reason given)");
        w->canceled = 1;
    } else if (json_is_true(json_object_get(result, "created"))) {
        w->created = 1;
        w->on_change(w->arg); /* in place: what changed before it is read by the caller */
    } else if (json_array_size(json_object_get(result, "events")) > 0) {
        w->on_change(w->arg);
    }
    json_decref(got);
}

static size_t on_watch_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct watch_stream *w = arg;
    size_t n = size * nmemb;

    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (w->len)
                watch_line(w, w->line, w->len);
            w->len = 0;
            continue;
        }
        if (w->len == ETCD_MAX_ANSWER)
            return 0; /* a line this long is not the gateway's: curl stops */
        if ((w->len & (w->len - 1)) == 0 && w->len >= 256) {
            char *grown = realloc(w->line, w->len * 2);
            if (!grown)
                return 0;
            w->line = grown;
        }
        w->line[w->len++] = data[i];
    }
    return w->canceled ? 0 : n;
}

int etcd_watch(etcd *e, const char *key, int64_t max_s, void (*on_change)(void *arg), void *arg)
{
    struct watch_stream w = {.e = e, .on_change = on_change, .arg = arg, .line = malloc(256)};
    json_t *req = json_object(), *body = NULL;
    char *text = NULL, url[CONFIG_ENDPOINT_MAX + 64];
    int rc = EHOSTUNREACH;

    e->err[0] = '\0';
    if (req && set_b64(req, "key", key, strlen(key)) == 0)
        body = json_pack("{s:O}", "create_request", req);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(req);
    json_decref(body);
    pthread_mutex_lock(&e->lock);
    if (!e->multi)
        e->multi = curl_multi_init();
    pthread_mutex_unlock(&e->lock);
    if (!text || !w.line || !e->multi) {
        free(text);
        free(w.line);
        snprintf(e->err, sizeof e->err, "out of memory");
        return ENOMEM;
    }
    for (uint32_t tried = 0; tried < e->n_urls && !atomic_load(&e->cancel); tried++) {
        uint32_t i = (e->current + tried) % e->n_urls;
        CURLcode cc = CURLE_OK;
        int running = 1;

        snprintf(url, sizeof url, "%s/v3/watch", e->urls[i]);
        w.len = 0;
        w.created = w.canceled = 0;
        curl_easy_reset(e->curl);
        curl_easy_setopt(e->curl, CURLOPT_URL, url);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_watch_body);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &w);
        curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
        /* a stream lives at most max_s: one to an etcd that went silent
         * (its host lost, the connection left open) ends, and the caller
         * watches again */
        curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)max_s * 1000);
        curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        if (curl_multi_add_handle(e->multi, e->curl) != CURLM_OK) {
            rc = ENOMEM;
            break;
        }
        while (running && !atomic_load(&e->cancel)) {
            if (curl_multi_perform(e->multi, &running) != CURLM_OK)
                break;
            /* etcd_watch_cancel wakes this poll (curl_multi_wakeup) */
            if (running && curl_multi_poll(e->multi, NULL, 0, 1000, NULL) != CURLM_OK)
                break;
        }
        CURLMsg *m;
        int left = 0;
        while ((m = curl_multi_info_read(e->multi, &left)))
            if (m->msg == CURLMSG_DONE)
                cc = m->data.result;
        curl_multi_remove_handle(e->multi, e->curl);
        if (atomic_load(&e->cancel))
            break;
        if (w.created) { /* it was in place: the stream ended (etcd stopped, or max_s) */
            e->current = i;
            if (!w.canceled)
                snprintf(e->err, sizeof e->err, "etcd at %s: the watch ended: %s", e->urls[i],
                         cc == CURLE_OK ? "the answer ended" : curl_easy_strerror(cc));
            rc = w.canceled ? EPROTO : EHOSTUNREACH;
            break;
        }
        if (!w.canceled)
            snprintf(e->err, sizeof e->err, "etcd at %s: cannot watch: %s", e->urls[i],
                     cc == CURLE_OK ? "the answer ended before the watch was in place"
                                    : curl_easy_strerror(cc));
        rc = w.canceled ? EPROTO : EHOSTUNREACH; /* the next endpoint */
    }
    free(text);
    free(w.line);
    return atomic_load(&e->cancel) ? 0 : rc;
}

void etcd_watch_cancel(etcd *e)
{
    atomic_store(&e->cancel, 1);
    pthread_mutex_lock(&e->lock);
    if (e->multi)
        curl_multi_wakeup(e->multi);
    pthread_mutex_unlock(&e->lock);
}
