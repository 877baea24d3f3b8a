#!/usr/bin/env python3
"""Speculative decoding (EAGLE-3) benchmark on the default model.

  python3 scripts/bench_spec.py [--build build] [--threads 1,2] [--write-docs] [...]

1. Verify-step cost: BUILD/tests/bench/ey_bench_verify at each thread count: one
   tree-masked target forward over N = 1..--max-nodes new rows after a context of --ctx
   rows (logits of every row, as verification needs), median of --verify-reps; a random
   tree (positions L + depth) and a chain (causal mask). The ratio t(N) / t(1) is the
   acceptance length tau a round verifying N nodes must reach to break even with plain
   decoding when drafting is free.
2. Generation: BUILD/eyrie generate --json on --prompts chat prompts (greedy, EOS ignored,
   --max-tokens tokens) without a drafter, and with a drafter (default: a random one written
   by `eyrie drafter-init`, tau ~ 1: pure overhead; the trained drafter has its own benchmark,
   scripts/bench_drafter.py) in chain and tree modes.
   Decode tokens/s = (completion tokens - 1) / decode time (the first token comes from the
   prefill), summed over the prompts, median of --gen-reps; tau = 1 + accepted / rounds.
   Speculative output must be identical to plain output (checked, printed).
3. Upper bound: BUILD/tests/bench/ey_bench_spec_oracle runs ey_spec_generate with the test
   oracle (drafts = the target's own greedy continuation, always right, no drafter cost)
   for chain k and one tree shape, against plain ey_generate in the same process.

Prints markdown tables, writes a plot (--plot, default docs/img/verify_cost.png) and with
--write-docs replaces the section of docs/benchmarks.md between
<!-- bench_spec:begin --> and <!-- bench_spec:end --> (inserted before "## Media
front-ends" when missing). matplotlib is needed for the plot only
(pip install -r scripts/deps/bench-pip.txt)."""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(os.environ.get("EYRIE_CACHE", os.path.expanduser("~/.cache/eyrie")),
                             "models", "smollm2-135m-instruct-q4_1.gguf")
PROMPTS = [
    "Explain how photosynthesis works, step by step.",
    "Write a short story about a robot who learns to paint.",
    "List ten practical tips for staying productive while working from home.",
    "Describe the water cycle to a ten-year-old.",
]
TABLE_NODES = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64]
BEGIN, END = "<!-- bench_spec:begin -->", "<!-- bench_spec:end -->"


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    for line in sh("lscpu").splitlines():
        if line.startswith("Model name:"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    return f"unknown CPU, {os.cpu_count()} CPUs"


def run_verify(a, th):
    exe = os.path.join(a.build, "tests", "bench", "ey_bench_verify")
    cmd = [exe, "--model", a.model, "--threads", str(th), "--ctx", str(a.ctx), "--reps",
           str(a.verify_reps), "--max-nodes", str(a.max_nodes), "--json"]
    if a.capture:
        cmd.append("--capture")
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def eyrie_gen(a, prompt, th, extra):
    cmd = [os.path.join(a.build, "eyrie"), "generate", "--model", a.model, "--chat", prompt,
           "--temperature", "0", "--max-tokens", str(a.max_tokens), "--ignore-eos", "--threads",
           str(th), "--json"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout)


def run_oracle(a, th):
    exe = os.path.join(a.build, "tests", "bench", "ey_bench_spec_oracle")
    cmd = [exe, "--model", a.model, "--threads", str(th), "--max-tokens", str(a.max_tokens),
           "--reps", str(a.gen_reps), "--shapes", a.oracle_shapes] + a.prompt_list
    print("+", " ".join(cmd[:12]), "PROMPTS...", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 3):
        sys.exit(f"ey_bench_spec_oracle failed ({r.returncode}): {r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def agg(runs):
    """runs: list of per-prompt dicts of one repetition -> (tok/s over all prompts)."""
    toks = sum(r["tokens"] - 1 for r in runs)
    ms = sum(r["decode_ms"] for r in runs)
    return toks * 1000.0 / ms


def summarize(rows_by_rep, plain_by_rep):
    """rows_by_rep[rep] = list of run dicts (one per prompt) with optional spec fields."""
    tps = statistics.median(agg(rs) for rs in rows_by_rep)
    ptps = statistics.median(agg(rs) for rs in plain_by_rep)
    allr = [r for rs in rows_by_rep for r in rs]
    out = {"tok_s": tps, "ratio": tps / ptps}
    if "rounds" in allr[0]:
        rounds = sum(r["rounds"] for r in allr)
        out["tau"] = 1 + sum(r["accepted"] for r in allr) / rounds
        out["drafted"] = sum(r["drafted"] for r in allr) / rounds
        out["draft_ms"] = sum(r["draft_ms"] for r in allr) / rounds
        out["verify_ms"] = sum(r["verify_ms"] for r in allr) / rounds
    out["same"] = sum(1 for r in allr if r.get("same", True))
    out["n"] = len(allr)
    return out


def run_gen(a, th):
    """CLI runs: plain, drafter chain, drafter tree; interleaved per repetition."""
    modes = [("plain", []),
             (f"random drafter, chain k={a.spec_k}",
              ["--drafter", a.drafter, "--spec-method", "chain", "--spec-k", str(a.spec_k)]),
             (f"random drafter, tree {a.spec_topk}/{a.spec_depth}/{a.spec_tokens}",
              ["--drafter", a.drafter, "--spec-method", "tree", "--spec-topk", str(a.spec_topk),
               "--spec-depth", str(a.spec_depth), "--spec-tokens", str(a.spec_tokens)])]
    res = {m: [[] for _ in range(a.gen_reps)] for m, _ in modes}
    for rep in range(a.gen_reps):
        for pi, prompt in enumerate(a.prompt_list):
            ref = None
            for name, extra in modes:
                j = eyrie_gen(a, prompt, th, extra)
                run = {"tokens": j["usage"]["completion_tokens"], "decode_ms": j["timing"]["decode_ms"]}
                if "spec" in j:
                    s = j["spec"]
                    run.update(rounds=s["rounds"], accepted=s["accepted"], drafted=s["drafted"],
                               draft_ms=s["draft_ms"], verify_ms=s["verify_ms"])
                if ref is None:
                    ref = (j["text"], j["token_ids"])
                else:
                    run["same"] = (j["text"], j["token_ids"]) == ref
                res[name][rep].append(run)
        print(f"  threads {th}: generation rep {rep + 1}/{a.gen_reps} done", file=sys.stderr,
              flush=True)
    plain = res["plain"]
    return [(name, summarize(res[name], plain)) for name, _ in modes]


def oracle_summary(a, runs):
    reps = sorted({r["rep"] for r in runs})
    shapes = []
    for r in runs:
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    by = {s: [[r for r in runs if r["shape"] == s and r["rep"] == rep] for rep in reps] for s in shapes}
    out = []
    for s in shapes:
        if s == "plain":
            continue
        if s.startswith("chain:"):
            label = f"oracle (always right), chain k={s.split(':')[1]}"
        else:
            t = s.split(":")
            label = f"oracle (always right), tree {t[1]}/{t[2]}/{t[3]}"
        out.append((label, summarize(by[s], by["plain"])))
    return out, summarize(by["plain"], by["plain"])


def plot(a, verify, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {1: "tab:blue", 2: "tab:orange"}
    for th, v in verify.items():
        c = colors.get(th)
        for shape, ls in (("tree", "-"), ("chain", ":")):
            rows = [r for r in v["rows"] if r["shape"] == shape]
            if not rows:
                continue
            n = [r["nodes"] for r in rows]
            ax.plot(n, [r["median_ms"] for r in rows], ls, color=c, marker="o" if shape == "tree" else None,
                    ms=3, label=f"{th} thread{'s' if th > 1 else ''}, {shape}")
            if shape == "tree":
                ax2.plot(n, [r["ratio"] for r in rows], "-", color=c, marker="o", ms=3,
                         label=f"{th} thread{'s' if th > 1 else ''}")
        t1 = [r for r in v["rows"] if r["shape"] == "tree" and r["nodes"] == 1][0]["median_ms"]
    nmax = max(r["nodes"] for v in verify.values() for r in v["rows"])
    ax2.plot([1, nmax], [1, nmax], "--", color="grey", lw=1, label="N separate decode steps")
    ax.set_xlabel("nodes verified in one forward (N)")
    ax.set_ylabel("verify forward, ms (median)")
    ax.set_title(f"Verify-step cost, context {a.ctx}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xlabel("nodes verified in one forward (N)")
    ax2.set_ylabel("t(N) / t(1)  (= break-even tau)")
    ax2.set_title("Cost relative to one decode step")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"{os.path.basename(a.model)} — eyrie CPU backend", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verify_table(verify):
    ths = sorted(verify)
    head = "| N (nodes) |" + "".join(
        f" {th}T tree ms | {th}T t(N)/t(1) | {th}T ms/node | {th}T chain ms |" for th in ths)
    lines = [head, "|---|" + "---|---|---|---|" * len(ths)]
    for n in TABLE_NODES:
        cells = []
        for th in ths:
            tr = {r["nodes"]: r for r in verify[th]["rows"] if r["shape"] == "tree"}
            ch = {r["nodes"]: r for r in verify[th]["rows"] if r["shape"] == "chain"}
            if n not in tr:
                break
            r = tr[n]
            cells.append(f" {r['median_ms']:.2f} | {r['ratio']:.2f} | {r['ms_per_node']:.2f} | "
                         f"{ch[n]['median_ms']:.2f} |" if n in ch else
                         f" {r['median_ms']:.2f} | {r['ratio']:.2f} | {r['ms_per_node']:.2f} | – |")
        if len(cells) == len(ths):
            lines.append(f"| {n} |" + "".join(cells))
    return "\n".join(lines)


def gen_table(gen):
    lines = ["| threads | decoding | decode tok/s | vs plain | τ | nodes−1 / round | draft ms / round | "
             "verify ms / round | output = plain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for th, rows in gen:
        for name, s in rows:
            if "tau" in s:
                lines.append(f"| {th} | {name} | {s['tok_s']:.1f} | {s['ratio']:.2f} | {s['tau']:.2f} | "
                             f"{s['drafted']:.1f} | {s['draft_ms']:.2f} | {s['verify_ms']:.2f} | "
                             f"{s['same']}/{s['n']} |")
            else:
                lines.append(f"| {th} | {name} | {s['tok_s']:.1f} | 1.00 | – | – | – | – | – |")
    return "\n".join(lines)


def write_docs(section):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(path).read()
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + block + post
    elif "## Media front-ends" in text:
        pre, post = text.split("## Media front-ends", 1)
        text = pre + block + "\n\n## Media front-ends" + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory (default build)")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--ctx", type=int, default=256, help="context rows before the verify step")
    ap.add_argument("--max-nodes", type=int, default=64)
    ap.add_argument("--verify-reps", type=int, default=7)
    ap.add_argument("--capture", action="store_true", help="verify with EAGLE-3 capture on")
    ap.add_argument("--gen-reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the built-in prompts")
    ap.add_argument("--drafter", help="drafter directory (default: a random one from drafter-init)")
    ap.add_argument("--spec-k", type=int, default=4)
    ap.add_argument("--spec-topk", type=int, default=4)
    ap.add_argument("--spec-depth", type=int, default=5)
    ap.add_argument("--spec-tokens", type=int, default=16)
    ap.add_argument("--oracle-shapes", default="chain:1,chain:2,chain:3,chain:4,chain:7,tree:4:5:16")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--skip-gen", action="store_true")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "img", "verify_cost.png"))
    ap.add_argument("--save-json", help="write all raw results to this file")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    if not os.path.isabs(a.build):
        a.build = os.path.join(ROOT, a.build)
    a.prompt_list = PROMPTS[: a.prompts]
    threads = [int(x) for x in a.threads.split(",")]

    argv = " ".join(sys.argv[1:])
    cmdline = f"python3 scripts/bench_spec.py{' ' + argv if argv else ''}"
    meta = {"cpu": machine(), "date": datetime.date.today().isoformat(),
            "commit": sh(f"git -C {ROOT} rev-parse --short HEAD") +
            (" (with uncommitted changes)" if sh(f"git -C {ROOT} status --porcelain -uno") else ""),
            "load_start": load_avg(), "cmd": cmdline}
    print(f"{meta['cpu']}; load average at start {meta['load_start']}", file=sys.stderr)

    tmp = None
    a.drafter_given = bool(a.drafter)
    if not a.skip_gen and not a.drafter:
        tmp = tempfile.TemporaryDirectory(prefix="eyrie-bench-spec-")
        a.drafter = os.path.join(tmp.name, "drafter")
        subprocess.run([os.path.join(a.build, "eyrie"), "drafter-init", "--target", a.model, "--out",
                        a.drafter, "--seed", "0"], check=True, capture_output=True)

    verify, gen, oracle = {}, [], []
    if not a.skip_verify:
        for th in threads:
            verify[th] = run_verify(a, th)
    if not a.skip_gen:
        for th in threads:
            rows = run_gen(a, th)
            orc, orc_plain = oracle_summary(a, run_oracle(a, th))
            gen.append((th, rows + orc))
            oracle.append((th, orc_plain))
    meta["load_end"] = load_avg()
    if a.save_json:
        with open(a.save_json, "w") as f:
            json.dump({"meta": meta, "verify": verify, "gen": gen, "oracle_plain": oracle}, f, indent=1)

    out = []
    out.append("## Speculative decoding (EAGLE-3): verify cost and tokens/s\n")
    out.append("```\npip install -r scripts/deps/bench-pip.txt      # matplotlib, for the plot only\n"
               f"{cmdline}\n```\n")
    out.append(f"{os.path.basename(a.model)}, eyrie CPU backend. {meta['cpu']}; {meta['date']}, "
               f"commit {meta['commit']}; load average (1/5/15 min) {meta['load_start']} at the start, "
               f"{meta['load_end']} at the end (the machine is shared: medians, indicative).\n")
    if verify:
        v0 = verify[threads[0]]
        out.append(f"**Verify-step cost.** `{os.path.relpath(a.build, ROOT)}/tests/bench/ey_bench_verify` "
                   f"(run by the command above): one target forward over N new rows after a context "
                   f"of {v0['ctx']} rows, logits for all N rows, EAGLE-3 capture "
                   f"{'on' if v0['capture'] else 'off'}; median of {v0['reps']} passes (each pass "
                   f"visits every N in shuffled order, K/V truncated back after each call). Tree = a "
                   f"random tree (parent of node i uniform below i, ancestor-or-self mask, positions "
                   f"L + depth); chain = causal mask. t(N)/t(1) is the acceptance length τ a round "
                   f"verifying N nodes must reach to break even with plain decoding when drafting "
                   f"costs nothing.\n")
        out.append(verify_table(verify) + "\n")
        out.append(f"![verify cost](img/{os.path.basename(a.plot)})\n")
    if gen:
        out.append(f"**Decoding with and without speculation.** `eyrie generate --json`, "
                   f"{len(a.prompt_list)} chat prompts (built into the script), greedy, "
                   f"{a.max_tokens} tokens with EOS ignored; decode tok/s = (tokens − 1) / decode "
                   f"time summed over the prompts, median of {a.gen_reps} repetitions (plain and "
                   f"speculative runs interleaved); τ = 1 + accepted / rounds; \"output = plain\" counts "
                   f"runs whose text and token ids equal the plain run's. " + (
                   f"The drafter is `{a.drafter}`. " if a.drafter_given else
                   f"The random drafter is `eyrie drafter-init --seed 0` (draft vocabulary = the "
                   f"target's): it accepts nothing (τ ≈ 1), so every round is pure overhead (the "
                   f"trained drafter: next section). ") +
                   f"The oracle rows (`{os.path.relpath(a.build, ROOT)}/tests/bench/ey_bench_spec_oracle`, "
                   f"same prompts, in-process, ratio to its own plain runs) draft the target's own "
                   f"greedy continuation through the test oracle of `core/spec.h`: every chain draft is "
                   f"right (τ = k + 1 but for the last round) and nothing is spent drafting — the upper "
                   f"bound the verify cost allows; the oracle tree puts top-k siblings on each level "
                   f"with one right, so it shows what a tree's extra nodes cost.\n")
        out.append(gen_table(gen) + "\n")
        out.append("Plain runs inside the oracle program: " + "; ".join(
            f"{th} thread{'s' if th > 1 else ''} {s['tok_s']:.1f} tok/s" for th, s in oracle) + ".\n")
    section = "\n".join(out).rstrip("\n")
    print(section)
    if verify:
        try:
            plot(a, verify, a.plot)
            print(f"\nplot: {os.path.relpath(a.plot, ROOT)}", file=sys.stderr)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -r scripts/deps/bench-pip.txt)",
                  file=sys.stderr)
    if a.write_docs:
        write_docs(section)
        print("docs/benchmarks.md updated", file=sys.stderr)
    if tmp:
        tmp.cleanup()
    if any(s["same"] != s["n"] for _, rows in gen for _, s in rows if "tau" in s):
        print("ERROR: speculative output differs from plain output", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
