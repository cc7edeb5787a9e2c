/* main.c -- the `ringkeep` command: parses the subcommand and dispatches.
 * Each subcommand lives in its own cmd_*.c and parses its own flags.
 * Exit status: 0 success, 1 failure, 2 usage error. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "ringkeep.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ringkeep COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  demo [--producers N] [--records N] [--value-size B] [--capacity BYTES]\n"
        "                       producers write a ring, a consumer drains and verifies it,\n"
        "                       with live progress and a throughput summary\n"
        "  node [-c|--config FILE] [--data-dir DIR] [--ring NAME] [--log-level L]\n"
        "       [--set SECTION.KEY=VALUE]... [--promote [--force]]\n"
        "                       run a node: a primary drains the ring into the journal, applies it\n"
        "                       to state and serves standbys; a standby (role = standby) follows one\n"
        "                       (--promote: start a stopped standby as the primary, in a new epoch;\n"
        "                       under [ha] only with --force)\n"
        "  monitor ENDPOINT [--json | --live | --lines] [--count N] [--curve-server-key K\n"
        "          --curve-public-key K --curve-secret-key K]\n"
        "                       print a primary's checkpoint notices and heartbeats as they come\n"
        "                       (--live: one line redrawn each second, the default on a terminal)\n"
        "  status (-c|--config FILE | -d|--data-dir DATA_DIR) [--json]\n"
        "                       ask a running node for its status (exit 3: no node running)\n"
        "  top (-c|--config FILE | -d|--data-dir DATA_DIR) [--count N] [--interval SECONDS]\n"
        "                       a running node's key figures, refreshed every second (rates,\n"
        "                       lags, ring fill, standbys, checkpoints), as redis-cli --stat\n"
        "  promote (-c|--config FILE | -d|--data-dir DATA_DIR) [--force] [--no-wait]\n"
        "          [--timeout SECONDS]\n"
        "                       make a running standby the primary, in the same process\n"
        "  drill [--standbys N] [--rounds R] [--kill sigkill|sigstop|sigterm[,...]] [--records N]\n"
        "        [--seed S] [--dir DIR] [--keep] [--set SECTION.KEY=VALUE]... [--json] [CONFIG...]\n"
        "                       rehearse failover on this host: kill the primary, promote a standby,\n"
        "                       restart the engine on it, rejoin the old primary; R rounds, a report\n"
        "  drill --ha [--standbys N] [--rounds R] [--faults FAULT[,...]] [--random-faults FAULT[,...]]\n"
        "        [--ttl-ms T] [--records N] [--seed S] [--dir DIR] [--keep] [--set SECTION.KEY=VALUE]...\n"
        "        [--json]\n"
        "                       the same with its own etcd doing the failover ([ha]); a FAULT per\n"
        "                       round: kill-primary, stop-primary, kill-standby, etcd-restart,\n"
        "                       kill-primary+standby or random\n"
        "  cluster status -c FILE [--json]\n"
        "                       automatic failover ([ha]): who leads and each member, from etcd\n"
        "  checkpoint create [-d|--data-dir DATA_DIR | -c|--config FILE]\n"
        "                       ask a running node for a checkpoint now; prints its file\n"
        "  checkpoint list [-d|--data-dir DATA_DIR | -c|--config FILE] [--json]\n"
        "  checkpoint verify FILE... | --all [-d|--data-dir DATA_DIR | -c|--config FILE]\n"
        "  checkpoint export FILE\n"
        "                       list, check (offline) and dump checkpoint files\n"
        "  checkpoint import FILE --to DIR\n"
        "                       a new data directory holding the state of an export (JSON lines)\n"
        "  set-aside list (-d|--data-dir DATA_DIR | -c|--config FILE) [--json]\n"
        "  set-aside export (-d|--data-dir DATA_DIR | -c|--config FILE) [RUN]\n"
        "                       list and dump (JSON lines) the journal entries a former primary or\n"
        "                       a standby set aside past its fork point with a newer primary\n"
        "  restore --to DIR (-d|--data-dir DATA_DIR | -c|--config FILE) [--checkpoint FILE]\n"
        "          [--height P:N | --seq S]\n"
        "                       a new data directory from a stopped node's checkpoint and journal,\n"
        "                       to the latest point, a journal seq or a producer's height\n"
        "  ring create NAME [--capacity BYTES] [--start-lsn N]\n"
        "                       create a ring with no node behind it (default 4M)\n"
        "  ring inspect NAME [--json]\n"
        "                       print a ring's header: capacity, fill, cursors, producers, tables\n"
        "  ring rm NAME         remove a ring segment (/dev/shm/ringkeep.NAME)\n"
        "  version              print the version\n"
        "  help                 print this\n"
        "\n"
        "`ringkeep COMMAND --help` prints a command's own usage.\n");
}

static void version_usage(FILE *out)
{
    fprintf(out, "usage: ringkeep version\n"
                 "  prints the version of ringkeep (the library's, which this binary links)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "ring") == 0)
        return cmd_ring(argc - 1, argv + 1);
    if (strcmp(argv[1], "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    if (strcmp(argv[1], "node") == 0)
        return cmd_node(argc - 1, argv + 1);
    if (strcmp(argv[1], "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(argv[1], "top") == 0)
        return cmd_top(argc - 1, argv + 1);
    if (strcmp(argv[1], "promote") == 0)
        return cmd_promote(argc - 1, argv + 1);
    if (strcmp(argv[1], "checkpoint") == 0)
        return cmd_checkpoint(argc - 1, argv + 1);
    if (strcmp(argv[1], "set-aside") == 0)
        return cmd_set_aside(argc - 1, argv + 1);
    if (strcmp(argv[1], "restore") == 0)
        return cmd_restore(argc - 1, argv + 1);
    if (strcmp(argv[1], "monitor") == 0)
        return cmd_monitor(argc - 1, argv + 1);
    if (strcmp(argv[1], "drill") == 0)
        return cmd_drill(argc - 1, argv + 1);
    if (strcmp(argv[1], "cluster") == 0)
        return cmd_cluster(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        if (argc > 2)
            return cli_usage(version_usage, argc == 3 && strcmp(argv[2], "--help") == 0);
        printf("ringkeep %s\n", rk_version(NULL, NULL, NULL));
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ringkeep: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
