/* log.h -- logfmt lines on stderr (private to ringkeep):
 *   ts=2026-11-22T00:50:00.123Z level=info msg="drain started" ring=orders
 * msg is quoted by the logger; the key=value part is the caller's format. */
#ifndef RK_LOG_H
#define RK_LOG_H

#include "config.h"

void log_set_level(int level); /* LOG_DEBUG..LOG_ERROR; lines below it are dropped */
int log_level_parse(const char *name, int *level); /* "debug".."error"; 0 or RK_EINVAL */
__attribute__((format(printf, 3, 4))) void log_msg(int level, const char *msg, const char *kv_fmt, ...);

#endif
