/* log.h -- logfmt lines on stderr (private to ringkeep):
 *   ts=2026-11-22T00:50:00.123Z level=info msg="drain started" ring=orders
 * msg is quoted by the logger; the key=value part is the caller's format.
 *
 * ts is UTC with milliseconds; level is debug, info, warn or error.  In msg,
 * '"' and '\' are escaped with a backslash, newline, CR and tab as \n \r
 * \t, other control bytes as \u00XX.  In the key=value part control bytes
 * are escaped the same way (quotes and backslashes are the caller's), so a
 * line is always one line.  kv_fmt may be NULL (no fields).  A line longer
 * than LOG_LINE_MAX bytes is cut and ends with " truncated=true".
 * Each line is one write(2) to fd 2: lines from threads never interleave.
 * Every function is safe from any thread; log_msg keeps errno. */
#ifndef RK_LOG_H
#define RK_LOG_H

#include "persist/config.h"

#define LOG_LINE_MAX 4096 /* bytes in a line, '\n' included (PIPE_BUF: atomic on a pipe) */

void log_set_level(int level); /* LOG_DEBUG..LOG_ERROR (clamped); lines below it are dropped;
                                  LOG_INFO until set */
int log_get_level(void);
int log_level_parse(const char *name, int *level); /* "debug".."error"; 0 or RK_EINVAL */
__attribute__((format(printf, 3, 4))) void log_msg(int level, const char *msg, const char *kv_fmt, ...);

#endif
