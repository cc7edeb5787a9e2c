/* checkpoint.c -- what the checkpoint writer, reader and their callers
 * share: the state digest, the key order, ckpt_info_free, the header's
 * key names and hash, and the names of checkpoint files: the listing of a
 * checkpoints folder and the writer's temp files (the contract is in
 * checkpoint.h, the file layout in checkpoint_format.h; the writer is
 * checkpoint_write.c, the reader and verifier checkpoint_read.c).
 *
 * Threads: every function here is pure or works on its arguments alone;
 * any thread may call them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t, XXH3_state_t on the stack */
#include <xxhash.h>

#include "persist/checkpoint.h"
#include "persist/checkpoint_format.h"
#include "persist/store.h"

const char *const ckpt_key_names[N_KEYS] = {
    [K_EPOCH] = "epoch",         [K_JOURNAL_SEQ] = "journal_seq", [K_LSN] = "lsn",
    [K_CREATED] = "created_ns",  [K_PRODUCERS] = "producers",     [K_TABLES] = "tables",
    [K_N_ENTRIES] = "n_entries", [K_RAW_SIZE] = "raw_size",       [K_DIGEST] = "digest",
    [K_REPLAY] = "replay",       [K_HISTORY] = "history",
};

uint64_t ckpt_header_hash(const uint8_t *prefix, const uint8_t *map, size_t map_len)
{
    XXH64_state_t st;

    XXH64_reset(&st, 0);
    XXH64_update(&st, prefix, OFF_HEADER_HASH);
    XXH64_update(&st, map, map_len);
    return XXH64_digest(&st);
}

uint64_t ckpt_entry_digest(const char *table, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    XXH3_state_t st;
    uint64_t seed;

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, table, strlen(table) + 1); /* the name and its NUL */
    XXH3_64bits_update(&st, klen ? key : "", klen);
    seed = XXH3_64bits_digest(&st);
    return XXH3_64bits_withSeed(vlen ? val : "", vlen, seed);
}

void ckpt_info_free(struct ckpt_info *info)
{
    if (!info)
        return;
    free(info->producers);
    free(info->tables);
    free(info->replay.producers);
    free(info->replay.table_ids);
    free(info->replay.slots);
    free(info->history);
    info->history = NULL;
    info->n_history = 0;
    info->producers = NULL;
    info->tables = NULL;
    info->n_producers = 0;
    info->n_tables = 0;
    memset(&info->replay, 0, sizeof info->replay);
    info->has_replay = 0;
}

int ckpt_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* ------------------------------------------------------------ names and listing */

int ckpt_name_seq(const char *name, uint64_t *seq)
{
    uint64_t v = 0;

    if (!name || strlen(name) != NAME_DIGITS + strlen(CKPT_SUFFIX) ||
        strcmp(name + NAME_DIGITS, CKPT_SUFFIX) != 0)
        return 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        if (v > (UINT64_MAX - (uint64_t)(name[i] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

int ckpt_list(const char *dir, char ***paths, size_t *n_paths)
{
    char **list = NULL, **grown;
    size_t n = 0, cap = 0;
    struct dirent *d;
    DIR *dh = NULL;
    uint64_t seq;
    int rc = 0;

    if (!dir || !paths || !n_paths)
        return RK_EINVAL;
    *paths = NULL;
    *n_paths = 0;
    dh = opendir(dir);
    if (!dh)
        return errno;
    /* bounded by the folder's entries */
    while ((errno = 0, d = readdir(dh)) != NULL) {
        if (!ckpt_name_seq(d->d_name, &seq))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            grown = realloc(list, cap * sizeof *list);
            if (!grown) {
                rc = ENOMEM;
                goto fail;
            }
            list = grown;
        }
        if (asprintf(&list[n], "%s/%s", dir, d->d_name) < 0) {
            rc = ENOMEM;
            goto fail;
        }
        n++;
    }
    if (errno) {
        rc = errno;
        goto fail;
    }
    closedir(dh);
    /* 20-digit zero-padded names: name order is sequence order */
    if (n)
        qsort(list, n, sizeof *list, cmp_desc);
    *paths = list;
    *n_paths = n;
    return 0;
fail:
    closedir(dh);
    ckpt_list_free(list, n);
    return rc;
}

void ckpt_list_free(char **paths, size_t n_paths)
{
    for (size_t i = 0; paths && i < n_paths; i++)
        free(paths[i]);
    free(paths);
}

int ckpt_is_temp_name(const char *name)
{
    size_t len = strlen(name);

    if (name[0] != '.')
        return 0;
    if (strncmp(name, SPOOL_PREFIX, strlen(SPOOL_PREFIX)) == 0)
        return len > 4 && strcmp(name + len - 4, ".tmp") == 0;
    return strstr(name, CKPT_SUFFIX ".tmp-") != NULL;
}
