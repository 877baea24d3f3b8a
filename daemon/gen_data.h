/* eyrie — `eyrie gen-data`: regenerate the assistant turns of a JSONL
 * conversation file with the target model itself (drafter training data in
 * the target's own distribution), batched, resumable, with progress.
 *
 *   eyrie gen-data [--model M] --prompts IN.jsonl --out OUT.jsonl [options]
 *
 * docs/cli.md ("eyrie gen-data") describes the formats and options. */
#ifndef EY_GEN_DATA_H
#define EY_GEN_DATA_H

/* argv[0] is "gen-data"; default_model: the path --model defaults to (the
 * front end's default model). Returns the process exit code: 0 done (bad
 * input lines and conversations that did not fit are reported and counted,
 * not fatal), 1 runtime error, 2 bad arguments, 130 interrupted. */
int ey_cli_gen_data(int argc, char **argv, const char *default_model);

#endif
