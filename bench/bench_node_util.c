/* bench_node_util.c -- helpers for the benchmarks that run nodes
 * (bench_node_util.h). */
#include "bench_node_util.h"

#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "node/client.h"

double bench_wait_publish_early(const char *dir)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < 3000; i++) {
        char *reply = NULL;
        int early = node_request(dir, "status", 5000, &reply) == 0 && reply &&
                    strstr(reply, "\"publish_before_fsync\":true") != NULL;
        free(reply);
        if (early)
            return (double)(now_ns() - t0) / 1e9;
        sleep_ns(10000000);
    }
    return -1;
}
