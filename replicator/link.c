/* link.c -- wire messages over ZeroMQ sockets (see link.h).
 *
 * A message is [route,] name, body.  link_recv reads every part of a
 * multipart message, whatever it holds, so that a malformed one never
 * leaves parts behind to be taken for the next message; a message with
 * the wrong number of parts is malformed.  Threads: the caller's; each
 * socket is used by one thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "replicator/link.h"

int link_setup(void *sock, int hwm)
{
    int64_t max_msg = wire_max_msg_size();
    int linger = 0;

    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger))
        return zmq_errno();
    return 0;
}

int link_curve_server(void *sock, const char *secret_key)
{
    int one = 1;
    const char *domain = "ringkeep";

    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, strlen(secret_key)) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)))
        return zmq_errno();
    return 0;
}

int link_curve_client(void *sock, const char *server_key, const char *public_key, const char *secret_key)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, strlen(server_key)) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_key, strlen(public_key)) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, strlen(secret_key)))
        return zmq_errno();
    return 0;
}

int link_send(void *sock, const uint8_t *route, size_t route_len, const struct wire_msg *m, char *why,
              size_t why_size)
{
    uint8_t *body = NULL;
    size_t body_len = 0;
    const char *name = wire_type_name(m->type);
    int rc = wire_encode(m, &body, &body_len, why, why_size);

    if (rc)
        return rc;
    if ((route && zmq_send(sock, route, route_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
        zmq_send(sock, name, strlen(name), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, body, body_len, ZMQ_DONTWAIT) < 0) {
        rc = zmq_errno();
        snprintf(why, why_size, "send: %s", zmq_strerror(rc));
    }
    free(body);
    return rc;
}

int link_recv(void *sock, int with_route, struct link_in *in, char *why, size_t why_size)
{
    int more = 1, n_parts = 0, bad = 0;
    size_t more_size = sizeof more;

    memset(in, 0, sizeof *in);
    in->src_fd = -1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, n_parts ? 0 : ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&part);
            if (n_parts == 0)
                return e;
            snprintf(why, why_size, "receive: %s", zmq_strerror(e));
            return e;
        }
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_size))
            more = 0;
        if (!(with_route && n_parts == 0) && zmq_msg_size(&part) > in->max_part_len)
            in->max_part_len = zmq_msg_size(&part);
        if (with_route && n_parts == 0) {
            size_t len = zmq_msg_size(&part);
            in->route_len = len <= LINK_ROUTE_MAX ? len : LINK_ROUTE_MAX;
            memcpy(in->route, zmq_msg_data(&part), in->route_len);
            zmq_msg_close(&part);
        } else if (in->n_frames < 2) {
            in->frames[in->n_frames++] = part;
        } else {
            bad = 1; /* too many parts: read them all, keep none */
            zmq_msg_close(&part);
        }
        n_parts++;
    }
    if (with_route && in->n_frames) {
        /* what the connection's handshake set (the routing id frame is
         * the ROUTER's own and carries none) */
        const char *user = zmq_msg_gets(&in->frames[0], "User-Id");
        const char *address = zmq_msg_gets(&in->frames[0], "Peer-Address");
        if (user && strlen(user) <= WIRE_NAME_MAX)
            snprintf(in->user_id, sizeof in->user_id, "%s", user);
        if (address)
            snprintf(in->peer_address, sizeof in->peer_address, "%s", address);
        in->src_fd = zmq_msg_get(&in->frames[0], ZMQ_SRCFD);
    }
    if (bad || in->n_frames != 2) {
        snprintf(why, why_size, "%d frames where a message has %d", n_parts, with_route ? 3 : 2);
        return RK_ECORRUPT;
    }
    int rc = wire_decode(zmq_msg_data(&in->frames[0]), zmq_msg_size(&in->frames[0]),
                         zmq_msg_data(&in->frames[1]), zmq_msg_size(&in->frames[1]), &in->m, why, why_size);
    in->decoded = rc == 0;
    return rc;
}

void link_in_free(struct link_in *in)
{
    if (in->decoded)
        wire_msg_free(&in->m);
    in->decoded = 0;
    for (int i = 0; i < in->n_frames; i++)
        zmq_msg_close(&in->frames[i]);
    in->n_frames = 0;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t link_realtime_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

uint64_t link_monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int link_file_xxh64(int fd, uint64_t *out)
{
    XXH64_state_t *st = XXH64_createState();
    uint8_t *buf = malloc(1u << 20);
    off_t off = 0;
    int rc = 0;

    if (!st || !buf) {
        rc = ENOMEM;
        goto out;
    }
    XXH64_reset(st, 0);
    for (;;) {
        ssize_t n = pread(fd, buf, 1u << 20, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno;
            goto out;
        }
        if (n == 0)
            break;
        XXH64_update(st, buf, (size_t)n);
        off += n;
    }
    *out = XXH64_digest(st);
out:
    XXH64_freeState(st);
    free(buf);
    return rc;
}
