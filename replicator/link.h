/* link.h -- wire messages over ZeroMQ sockets: the options every
 * replication socket gets, sending one message, receiving one (private to
 * ringkeep's replicator).  Encoding and decoding are wire.c's; this file
 * only moves frames.  A ZeroMQ socket belongs to one thread. */
#ifndef RK_LINK_H
#define RK_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "replicator/wire.h"

#define LINK_ROUTE_MAX 255 /* a ROUTER routing id */

/* ZMQ_MAXMSGSIZE (wire_max_msg_size), send and receive high-water marks
 * of hwm messages, ZMQ_LINGER 0.  0 or the zmq errno. */
int link_setup(void *sock, int hwm);

/* CURVE: a server (the primary's sockets) with its secret key, or a
 * client with the server's public key and its own pair (Z85 text).  Before
 * bind/connect.  0 or the zmq errno. */
int link_curve_server(void *sock, const char *secret_key);
int link_curve_client(void *sock, const char *server_key, const char *public_key, const char *secret_key);

/* Encodes m and sends it (without blocking: a full queue drops it and
 * returns EAGAIN) as [route,] name, body.  route NULL: no routing frame. */
int link_send(void *sock, const uint8_t *route, size_t route_len, const struct wire_msg *m, char *why,
              size_t why_size);

/* One received message: the frames stay here while m points into them. */
struct link_in {
    uint8_t route[LINK_ROUTE_MAX + 1];
    size_t route_len;
    zmq_msg_t frames[2]; /* name, body */
    int n_frames;        /* initialised frames to close */
    struct wire_msg m;
    int decoded;
    /* CURVE: the node_id the primary's ZAP handler bound to the sender's
     * key (ZeroMQ's "User-Id" property of the message), "" when none */
    char user_id[WIRE_NAME_MAX + 1];
    char peer_address[64]; /* its "Peer-Address" (IP for tcp), "" when unknown */
    int src_fd;            /* the connection's file descriptor (ZMQ_SRCFD), -1 when unknown */
    size_t max_part_len;   /* the largest part received, the ROUTER's routing id aside (also when
                              malformed: a ROUTER checks its request cap with it) */
};

/* Receives one whole multipart message without blocking.  with_route: a
 * ROUTER's, whose first frame is the sender's routing id; user_id is set
 * from the message's "User-Id" property (ZAP's answer for that peer).  Returns 0 (m
 * decoded), EAGAIN (nothing waiting), RK_ECORRUPT / RK_EVERSION (a message
 * was read and is malformed: why says what; route is set when known), or
 * another errno.  link_in_free in every case. */
int link_recv(void *sock, int with_route, struct link_in *in, char *why, size_t why_size);
void link_in_free(struct link_in *in);

/* XXH64 (seed 0) of the whole file open at fd, read with pread; 0 or an
 * errno. */
int link_file_xxh64(int fd, uint64_t *out);

/* CLOCK_REALTIME and CLOCK_MONOTONIC in ns. */
uint64_t link_realtime_ns(void);
uint64_t link_monotonic_ns(void);

#endif
