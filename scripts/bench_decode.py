#!/usr/bin/env python3
"""Prefill and decode speed of eyrie vs llama.cpp (llama-cpp-python) on the same GGUF.

  python3 scripts/bench_decode.py [--model GGUF] [--threads 1,2] [--reps 5]
                                  [--prompt-tokens 128] [--gen-tokens 128]

For each thread count: median over --reps runs of prefill tokens/s and decode tokens/s
for eyrie (build/eyrie generate --json, greedy, --ignore-eos) and for llama.cpp (the same
prompt token ids through llama_cpp.Llama.eval, greedy), the ratio eyrie / llama.cpp, and
the memory-bandwidth floor: bytes read per decode step (all weight tensors of the file,
the tied head included, plus the f32 KV cache at the mean context length) divided by the
measured read bandwidth (build/tests/bench/ey_membw). Prints a markdown table.

llama-cpp-python is installed only for this benchmark (pip install llama-cpp-python);
it is not needed to build or test eyrie."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(os.environ.get("EYRIE_CACHE", os.path.expanduser("~/.cache/eyrie")),
                             "models", "smollm2-135m-instruct-q4_1.gguf")
TEXT = ("The history of astronomy spans thousands of years, from the first careful records of "
        "the night sky kept by early farmers and priests to the great observatories of today. ")


def gguf_bytes(path):
    import gguf
    r = gguf.GGUFReader(path)
    total = sum(int(t.n_bytes) for t in r.tensors)
    f = lambda k: int(r.fields[k].parts[r.fields[k].data[0]][0])
    arch = bytes(r.fields["general.architecture"].parts[r.fields["general.architecture"].data[0]]).decode()
    n_layer = f(f"{arch}.block_count")
    n_head = f(f"{arch}.attention.head_count")
    n_kv = f(f"{arch}.attention.head_count_kv")
    hd = f(f"{arch}.embedding_length") // n_head
    return total, n_layer * n_kv * hd * 2 * 4  # weights, f32 K+V bytes per context row


def membw(threads):
    exe = os.path.join(ROOT, "build", "tests", "bench", "ey_membw")
    out = subprocess.run([exe, str(threads)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[1])


def eyrie_run(model, prompt, threads, gen):
    exe = os.path.join(ROOT, "build", "eyrie")
    r = subprocess.run([exe, "generate", "--model", model, "--prompt", prompt, "--temperature", "0",
                        "--max-tokens", str(gen), "--ignore-eos", "--threads", str(threads),
                        "--json"], capture_output=True, text=True, check=True)
    j = json.loads(r.stdout)
    pp = j["usage"]["prompt_tokens"] / (j["timing"]["prefill_ms"] / 1e3)
    return pp, j["timing"]["decode_tokens_per_s"], j["usage"]["prompt_tokens"]


def llama_run(llm, ids, gen):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    import numpy as np
    logits = np.asarray(llm.scores[llm.n_tokens - 1])
    tok = int(logits.argmax())
    t2 = time.perf_counter()
    for _ in range(gen - 1):
        llm.eval([tok])
        tok = int(np.asarray(llm.scores[llm.n_tokens - 1]).argmax())
    t3 = time.perf_counter()
    return len(ids) / (t1 - t0), (gen - 1) / (t3 - t2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    a = ap.parse_args()

    # a prompt of about --prompt-tokens tokens (exact count reported by eyrie)
    prompt = (TEXT * 20)[: a.prompt_tokens * 5]
    wbytes, kv_row = gguf_bytes(a.model)
    llm = None
    if not a.no_llama:
        try:
            import llama_cpp
        except ImportError:
            sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python (or --no-llama)")
    rows = []
    for th in [int(x) for x in a.threads.split(",")]:
        e_pp, e_tg = [], []
        n_prompt = 0
        for _ in range(a.reps):
            pp, tg, n_prompt = eyrie_run(a.model, prompt, th, a.gen_tokens)
            e_pp.append(pp)
            e_tg.append(tg)
        l_pp, l_tg = [], []
        if not a.no_llama:
            llm = llama_cpp.Llama(model_path=a.model, n_threads=th, n_threads_batch=th, n_ctx=2048,
                                  n_batch=512, logits_all=False, verbose=False)
            ids = llm.tokenize(prompt.encode(), add_bos=False)
            for _ in range(a.reps):
                pp, tg = llama_run(llm, ids, a.gen_tokens)
                l_pp.append(pp)
                l_tg.append(tg)
            del llm
        bw = membw(th)
        mean_ctx = n_prompt + a.gen_tokens / 2
        floor_bytes = wbytes + kv_row * mean_ctx
        floor_tps = bw * 1e9 / floor_bytes
        rows.append((th, statistics.median(e_pp), statistics.median(l_pp) if l_pp else float("nan"),
                     statistics.median(e_tg), statistics.median(l_tg) if l_tg else float("nan"),
                     bw, floor_bytes / 1e6, floor_tps, n_prompt))
    print(f"model: {os.path.basename(a.model)}; weights {wbytes / 1e6:.1f} MB; prompt "
          f"{rows[0][8]} tokens; {a.gen_tokens} generated; median of {a.reps}")
    print("| threads | eyrie prefill tok/s | llama.cpp prefill tok/s | ratio | eyrie decode tok/s | "
          "llama.cpp decode tok/s | ratio | read GB/s | bytes/token MB | floor tok/s | eyrie / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for th, epp, lpp, etg, ltg, bw, fb, ft, _ in rows:
        print(f"| {th} | {epp:.0f} | {lpp:.0f} | {epp / lpp:.2f} | {etg:.1f} | {ltg:.1f} | "
              f"{etg / ltg:.2f} | {bw:.1f} | {fb:.1f} | {ft:.0f} | {etg / ft:.2f} |")


if __name__ == "__main__":
    main()
