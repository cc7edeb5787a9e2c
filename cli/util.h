/* util.h -- helpers every `ringkeep` subcommand shares (private to cli/).
 * The cmd_*.c files depend on these, not on main.c. */
#ifndef RK_CLI_UTIL_H
#define RK_CLI_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Prints v as one line of compact JSON on stdout (Jansson) and drops the
 * reference; 0, or 1 after saying why (v NULL: out of memory). */
int cli_print_json(json_t *v);

/* Writes the bytes s[0..n) as text for a terminal: control bytes, DEL and
 * '\\' as \xHH (a newline in a name cannot forge a line), the rest as is. */
void cli_print_bytes(FILE *out, const void *s, size_t n);

/* s[0..n) escaped as cli_print_bytes writes it, NUL-terminated in
 * buf[size] (cut short, at a whole escape, when it does not fit); buf. */
char *cli_escape(const void *s, size_t n, char *buf, size_t size);

/* The export encoding of s[0..n) (`checkpoint export`, `set-aside
 * export`): a JSON string when printable UTF-8, else {"base64":"..."}
 * (json_bytes.h); a new reference, NULL when out of memory. */
json_t *cli_export_bytes(const uint8_t *s, size_t n);

/* A CLOCK_REALTIME time in ns as "YYYY-MM-DDTHH:MM:SSZ" ("?" if it has
 * none) in buf. */
void cli_format_time(uint64_t ns, char *buf, size_t size);

struct node_config;

/* Loads the node configuration file (defaults first, then the file's keys,
 * checked as `ringkeep node` checks them) for command prog.  The caller
 * frees it; NULL after printing why ("ringkeep <prog>: file:line: ...")
 * or when out of memory. */
struct node_config *cli_load_config(const char *prog, const char *file);

/* The data directory of a command's -c FILE (loaded into *c, which the
 * caller frees) or -d DIR (*dir already).  0, or the exit status after
 * saying why (2: the file does not load, or names no data directory). */
int cli_node_dir(const char *prog, const char *file, const char **dir, struct node_config **c,
                 void (*usage)(FILE *out));

/* Why the node on a data directory did not answer a control request
 * (rc from node_request). */
const char *cli_no_answer_why(int rc);

/* Says that the node on dir did not answer (rc from node_request) and
 * returns the exit status: 3 when none runs there (as pg_ctl status does
 * when no server runs), else 1. */
int cli_no_answer(const char *prog, const char *dir, int rc);

/* The node on dir's reply to request (a status) as a JSON object, a new
 * reference; NULL when it does not answer in timeout_ms or the reply is
 * not a JSON object, with node_request's error (RK_ECORRUPT: not an
 * object) in *rc when rc is not NULL. */
json_t *cli_node_json(const char *dir, const char *request, int timeout_ms, int *rc);

/* The unsigned integer member key of o (a boolean as 0 or 1); 0 when it
 * is absent, negative or another type. */
uint64_t cli_json_u64(const json_t *o, const char *key);

/* The string member key of o; "" when it is absent or not a string. */
const char *cli_json_str(const json_t *o, const char *key);

/* Polls the node on dir (every poll_us) until it answers as a primary of
 * an epoch above was, at most timeout_ms (its control endpoint is down a
 * moment while the roles change).  0 when it does; -1 when not in time.
 * Either way the last role and epoch it answered with ("" and 0: none) are
 * in role[role_size] and *epoch. */
int cli_wait_primary(const char *dir, uint64_t was, unsigned timeout_ms, unsigned poll_us, char *role,
                     size_t role_size, uint64_t *epoch);

/* How every command answers --help and a bad option (getopt_long has
 * named it already): help prints usage on stdout and returns 0; otherwise
 * usage goes to stderr and the exit status is 2. */
int cli_usage(void (*usage)(FILE *out), int help);

/* Parses a byte count with an optional K/M/G suffix (powers of 1024). */
int cli_parse_size(const char *s, unsigned long long *out);

#endif
