/* eyrie — `eyrie token-freq`: target-token frequencies over the loss-masked
 * (assistant) tokens of a JSONL conversation file, written as the
 * "id count" lines that `eyrie drafter-init --freq` reads (eagle3.md §1.4).
 *
 *   eyrie token-freq [--model M] --data FILE.jsonl --out FREQ.txt [--limit N]
 *
 * docs/cli.md ("eyrie token-freq") describes it. */
#ifndef EY_TOKEN_FREQ_H
#define EY_TOKEN_FREQ_H

/* argv[0] is "token-freq"; default_model: the path --model defaults to.
 * Returns the process exit code: 0 done (bad lines are reported and
 * skipped), 1 runtime error, 2 bad arguments. */
int ey_cli_token_freq(int argc, char **argv, const char *default_model);

#endif
