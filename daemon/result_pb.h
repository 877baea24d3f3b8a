/* eyrie — an engine result (ey_gen_result + ey_spec_stats) as a protocol
 * GenerateResult. Shared by the daemon (answers) and the CLI (the in-process
 * `--json` output goes through the same renderer as a daemon's answer,
 * eyc_result_json, so both print identical objects). */
#ifndef EY_RESULT_PB_H
#define EY_RESULT_PB_H

#include <stdbool.h>

#include "../core/generate.h"
#include "../core/spec.h"
#include "eyrie.pb-c.h"

/* Fill *out (initialised here; any previous content is overwritten, not
 * freed) from r and, when speculation ran, st (NULL otherwise). queue_ms:
 * time the job waited before it ran (< 0: not set). with_tokens: copy the
 * token ids (Generate.return_tokens). Everything is deep-copied: out owns its
 * memory, freed with ey_result_pb_free. Returns false on no memory (out is
 * then freed and empty). */
bool ey_result_to_pb(const ey_gen_result *r, const ey_spec_stats *st, double queue_ms,
                     bool with_tokens, Eyrie__GenerateResult *out);

/* Free what ey_result_to_pb allocated (not out itself) and reset it. */
void ey_result_pb_free(Eyrie__GenerateResult *out);

/* "stop" / "length" / "cancelled" / "deadline" -> FinishReason (else NONE). */
Eyrie__FinishReason ey_finish_reason_pb(const char *s);

#endif
