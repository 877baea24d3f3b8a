#!/usr/bin/env python3
"""`eyrie gen-data` on the tiny chat fixture (tests/fixtures/models/chat-tiny).

  test_gen_data.py EYRIE_BINARY MODEL_DIR

- a JSONL file with both formats, multi-turn conversations and bad lines: one output line
  per good conversation, every assistant turn regenerated (and a final one where the
  conversation ends with a user turn), bad lines reported with their line numbers, exit 0;
- greedy turns equal `eyrie generate --chat ... --temperature 0 --json` (also with a system
  message, in ShareGPT form, and for a prompt longer than one 512-row forward, which is
  prefilled in chunks next to decoding sequences); a later turn equals the final turn of
  the conversation fed back with the regenerated earlier turns;
- sampling: the conversation on line L equals `generate --seed S+L-1`;
- --batch 1 and --batch 4 give the same file;
- a conversation longer than the context is reported and left out (exit 0);
- resume: --limit 2 then a full run gives the lines of one full run; a truncated last
  line (killed mid-write) is dropped and regenerated; a bad line in the middle of --out
  stops the run (exit 1); bad arguments exit 2."""
import json
import os
import subprocess
import sys
import tempfile

exe, model = sys.argv[1], sys.argv[2]
failures = 0
MAXTOK = "12"


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def run(*args, expect=0):
    r = subprocess.run([exe, "gen-data", "--model", model, "--threads", "2", "--max-tokens",
                        MAXTOK, *args], capture_output=True, timeout=300)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == expect, f"gen-data {args}: exit {r.returncode}, want {expect}: {err}")
    return err


def generate(*args):
    r = subprocess.run([exe, "generate", "--model", model, "--threads", "2", "--max-tokens",
                        MAXTOK, "--json", *args], capture_output=True, timeout=300)
    check(r.returncode == 0, f"generate {args}: exit {r.returncode}")
    # the tiny random model emits invalid UTF-8; gen-data writes U+FFFD for each ill-formed
    # piece, as Python's "replace" does
    return json.loads(r.stdout.decode("utf-8", "replace"))


def read_out(path):
    with open(path, "rb") as f:
        lines = [json.loads(l.decode("utf-8")) for l in f.read().splitlines() if l.strip()]
    return lines, {json.dumps(o["id"]): o for o in lines}


long_text = " ".join(f"word{i} and some more text number {i}." for i in range(40))
huge_text = " ".join(f"word{i} and some more text number {i}." for i in range(200))
convs = [
    '{"id": "a", "messages": [{"role": "user", "content": "Hello there"}]}',
    json.dumps({"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"}, {"from": "human", "value": "And 3+3?"},
        {"from": "gpt", "value": "6"}]}),
    "this is not json",
    "",
    json.dumps({"id": 7, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "old"},
        {"role": "user", "content": [{"type": "text", "text": "more"}]}]}),
    '{"id": "a", "messages": [{"role": "user", "content": "dup"}]}',
    '{"messages": [{"role": "wizard", "content": "x"}]}',
    json.dumps({"id": "sg", "conversations": [{"from": "human", "value": "Hello there"}]}),
    json.dumps({"id": "long", "messages": [{"role": "user", "content": long_text}]}),
    '{"id": "sys-only", "messages": [{"role": "system", "content": "x"}]}',
    json.dumps({"id": "u5", "messages": [{"role": "user", "content": "Tell me a story"}]}),
    json.dumps({"id": "huge", "messages": [{"role": "user", "content": huge_text}]}),
]
GOOD = {'"a"', "2", "7", '"sg"', '"long"', '"u5"'}
BAD_LINES = [3, 6, 7, 10]

with tempfile.TemporaryDirectory() as d:
    inp = os.path.join(d, "in.jsonl")
    with open(inp, "w") as f:
        f.write("\n".join(convs) + "\n")
    full = os.path.join(d, "full.jsonl")

    # ---- (1) formats, turns, bad lines
    err = run("--prompts", inp, "--out", full, "--batch", "4")
    for ln in BAD_LINES:
        check(f"in.jsonl:{ln}:" in err, f"bad line {ln} not reported: {err}")
    check("4 bad lines skipped" in err, f"bad line count not reported: {err}")
    # line 12 (~4800 tokens) does not fit the fixture's 2048-token context: reported, not
    # written, not fatal
    check("in.jsonl:12:" in err and "1 did not fit" in err, f"too long not reported: {err}")
    lines, by_id = read_out(full)
    check(len(lines) == len(GOOD), f"{len(lines)} output lines, want {len(GOOD)}")
    check(set(by_id) == GOOD, f"ids {sorted(by_id)}")
    for o in lines:
        check(o["model"] == "chat-tiny", f"model {o['model']}")
        msgs = o["messages"]
        turns = o["turns"]
        check([t["message"] for t in turns] == [i for i, m in enumerate(msgs)
                                                if m["role"] == "assistant"], "turn indices")
        check(msgs[-1]["role"] == "assistant", "ends with an assistant turn")
        for t in turns:
            check(t["completion_tokens"] >= 1 and t["prompt_tokens"] > 0, "token counts")
            check(t["finish_reason"] in ("stop", "length"), "finish_reason")
    c2 = by_id.get("2")
    if c2:
        check([m["role"] for m in c2["messages"]] ==
              ["system", "user", "assistant", "user", "assistant"], "ShareGPT roles")
        check(c2["messages"][2]["content"] != "4" and c2["messages"][4]["content"] != "6",
              "assistant turns not regenerated")
        check(c2["messages"][3]["content"] == "And 3+3?", "user turn kept")
    c7 = by_id.get("7")
    if c7:
        check([m["role"] for m in c7["messages"]] == ["user", "assistant", "user", "assistant"],
              "final assistant turn appended")
        check(c7["messages"][2]["content"] == "more", "text content parts joined")

    # ---- (2) greedy equals eyrie generate
    g = generate("--chat", "Hello there", "--temperature", "0")
    for k in ('"a"', '"sg"'):
        if k in by_id:
            check(by_id[k]["messages"][-1]["content"] == g["text"],
                  f"{k}: {by_id[k]['messages'][-1]['content']!r} != generate {g['text']!r}")
            check(by_id[k]["turns"][0]["prompt_tokens"] == g["usage"]["prompt_tokens"],
                  "prompt tokens differ from generate")
            check(by_id[k]["turns"][0]["completion_tokens"] == g["usage"]["completion_tokens"],
                  "completion tokens differ from generate")
    g = generate("--chat", long_text, "--temperature", "0")
    check(g["usage"]["prompt_tokens"] > 512, "long prompt is not longer than one forward")
    if '"long"' in by_id:
        check(by_id['"long"']["messages"][-1]["content"] == g["text"], "long prompt differs")
    g = generate("--system", "Be brief.", "--chat", "What is 2+2?", "--temperature", "0")
    if c2:
        check(c2["messages"][2]["content"] == g["text"], "first turn with a system message")
        # the second turn: the conversation up to it, fed back, ends with the same turn
        fb = os.path.join(d, "fb.jsonl")
        with open(fb, "w") as f:
            f.write(json.dumps({"id": 1, "messages": c2["messages"][:4]}) + "\n")
        fbo = os.path.join(d, "fb-out.jsonl")
        run("--prompts", fb, "--out", fbo)
        fl, _ = read_out(fbo)
        check(len(fl) == 1 and fl[0]["messages"] == c2["messages"], "second turn differs")

    # ---- (3) sampling with a seed: line L uses seed S + L - 1
    samp = os.path.join(d, "samp.jsonl")
    run("--prompts", inp, "--out", samp, "--temperature", "0.9", "--seed", "11")
    _, sb = read_out(samp)
    for k, ln, text in (('"a"', 1, "Hello there"), ('"u5"', 11, "Tell me a story")):
        g = generate("--chat", text, "--temperature", "0.9", "--seed", str(11 + ln - 1))
        if k in sb:
            check(sb[k]["messages"][-1]["content"] == g["text"], f"sampled {k} differs")

    # ---- batch size does not change the output
    b1 = os.path.join(d, "b1.jsonl")
    run("--prompts", inp, "--out", b1, "--batch", "1")
    check(read_out(b1)[1] == by_id, "--batch 1 and --batch 4 differ")

    # ---- (4) resume: --limit 2, then the rest
    res = os.path.join(d, "resume.jsonl")
    run("--prompts", inp, "--out", res, "--limit", "2")
    rl, rb = read_out(res)
    check(set(rb) == {'"a"', "2"}, f"--limit 2 wrote {sorted(rb)}")
    err = run("--prompts", inp, "--out", res, "--batch", "3")
    check("2 already in" in err, f"resume did not skip: {err}")
    rl, rb = read_out(res)
    check(len(rl) == len(GOOD) and rb == by_id, "resumed file differs from a full run")
    err = run("--prompts", inp, "--out", res)
    # only the conversation that does not fit is left: tried again, still not written
    check("1 conversations to generate" in err and "0 conversations written" in err,
          f"complete file: {err}")
    check(read_out(res)[0] == rl, "a complete file changed")
    err = run("--prompts", inp, "--out", res, "--limit", "3")
    check("nothing to do" in err, f"--limit 3 on a complete file: {err}")

    # ---- (5) a truncated last line is dropped and regenerated
    with open(full, "rb") as f:
        raw = f.read().splitlines(keepends=True)
    tr = os.path.join(d, "trunc.jsonl")
    with open(tr, "wb") as f:
        f.write(b"".join(raw[:-1]) + raw[-1][: len(raw[-1]) // 2])
    err = run("--prompts", inp, "--out", tr)
    check("truncated" in err, f"truncation not reported: {err}")
    with open(tr, "rb") as f:
        data = f.read()
    check(data.endswith(b"\n"), "repaired file does not end with a newline")
    tl, tb = read_out(tr)
    check(len(tl) == len(GOOD) and tb == by_id, "repaired file differs from a full run")
    # a complete last line without its newline is kept
    nn = os.path.join(d, "nonl.jsonl")
    with open(nn, "wb") as f:
        f.write(b"".join(raw[:2]).rstrip(b"\n"))
    run("--prompts", inp, "--out", nn)
    nl, nb = read_out(nn)
    check(len(nl) == len(GOOD) and nb == by_id, "file without a final newline")

    # ---- a bad line inside --out is not silently dropped
    bad = os.path.join(d, "bad.jsonl")
    with open(bad, "wb") as f:
        f.write(raw[0] + b"garbage\n" + raw[1])
    err = run("--prompts", inp, "--out", bad, expect=1)
    check("bad.jsonl:2" in err, f"bad --out line not reported: {err}")

    # ---- arguments
    run("--prompts", inp, expect=2)
    run("--prompts", inp, "--out", full, "--batch", "0", expect=2)
    run("--prompts", os.path.join(d, "missing.jsonl"), "--out", full, expect=1)

print("gen-data:", "FAIL" if failures else "ok", file=sys.stderr)
sys.exit(1 if failures else 0)
