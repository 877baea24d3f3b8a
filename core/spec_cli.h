/* eyrie — command-line pieces of speculative decoding, kept out of
 * daemon/eyrie_cli.c so the front end only dispatches:
 *
 *   eyrie drafter-init [--target MODEL] --out DIR [--draft-vocab N] [--seed S]
 *                      [--freq FILE] [--layout eagle|specforge|speculators|angelslim]
 *                      [--dtype f32|f16|bf16] [--n-ff N]
 *
 * and the `spec` object of `eyrie generate --json`. */
#ifndef EY_SPEC_CLI_H
#define EY_SPEC_CLI_H

#include <cjson/cJSON.h>

#include "spec.h"

/* argv[0] is "drafter-init". Returns the process exit code: 0 ok, 1 runtime
 * error, 2 bad arguments. The target defaults to $EYRIE_MODEL, else
 * $EYRIE_CACHE/models/<default>, else ~/.cache/eyrie/models/<default>. */
int ey_cli_drafter_init(int argc, char **argv);

/* {method, rounds, drafted, accepted, mean_accept_len, accept_rate,
 *  per_position[], draft_ms, verify_ms} (eagle3.md §5); NULL on no memory. */
cJSON *ey_spec_stats_json(const ey_spec_stats *st);

/* Parse a --spec-method value. */
bool ey_spec_method_parse(const char *s, ey_spec_method *m);

#endif
