/* eyrie — `eyrie train-drafter` (train_cli.c; docs/training.md). */
#ifndef EY_TRAIN_CLI_H
#define EY_TRAIN_CLI_H

/* argv[0] is "train-drafter". Exit code: 0 done (or stopped by
 * --stop-after), 1 runtime error, 2 bad arguments, 130 interrupted (the
 * checkpoint is saved). default_model: used without --model. */
int ey_cli_train_drafter(int argc, char **argv, const char *default_model);

#endif
