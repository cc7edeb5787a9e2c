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

/* How every command answers --help and a bad option (getopt_long has
 * named it already): help prints usage on stdout and returns 0; otherwise
 * usage goes to stderr and the exit status is 2. */
int cli_usage(void (*usage)(FILE *out), int help);

/* Parses a byte count with an optional K/M/G suffix (powers of 1024). */
int cli_parse_size(const char *s, unsigned long long *out);

#endif
