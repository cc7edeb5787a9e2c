/* cli.h -- the subcommands of the `ringkeep` binary, which main.c
 * dispatches to (private to cli/).  Each lives in its own cmd_*.c. */
#ifndef RK_CLI_H
#define RK_CLI_H

int cmd_ring(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_promote(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_checkpoint_import(int argc, char **argv); /* argv[0] is "import" */
int cmd_restore(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_drill(int argc, char **argv);
int cmd_set_aside(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_top(int argc, char **argv);

#endif
