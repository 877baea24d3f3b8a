/* eyrie — `eyrie dump-hidden`: run the target over a JSONL conversation
 * file and store, per conversation, the token ids, the assistant loss mask,
 * the captured aux hidden states (f16), the full-vocabulary argmax and the
 * top-k teacher logits of every row, in the offline hidden-state format
 * (train/hidden_io.h) that the drafter trainer reads.
 *
 *   eyrie dump-hidden [--model PATH] --data CONVS.jsonl --out DIR [options]
 *
 * docs/training.md ("Offline hidden states") describes options and format. */
#ifndef EY_DUMP_HIDDEN_H
#define EY_DUMP_HIDDEN_H

/* argv[0] is "dump-hidden". --model defaults to ey_default_model_path().
 * Returns the process exit code: 0 done (bad or refused conversations are
 * reported and counted, not fatal), 1 runtime error, 2 bad arguments,
 * 130 interrupted (rerun the same command to resume). */
int ey_cmd_dump_hidden(int argc, char **argv);

#endif
