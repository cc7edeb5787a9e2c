/* selftest.h -- `orderbook --self-test`: the engine's checks without a node. */
#ifndef ORDERBOOK_SELFTEST_H
#define ORDERBOOK_SELFTEST_H

#include <stdio.h>

/* Runs every check, printing one line per check to out.  Returns 0 when
 * all pass, 1 when one fails, 2 when memory runs out. */
int selftest_run(FILE *out);

#endif
