#!/usr/bin/env python3
"""Benchmark of a trained EAGLE-3 drafter on the held-out prompts (issue 4).

  python3 scripts/bench_drafter.py --drafter DIR [--build build] [--model M] [--threads 2]
      [--max-tokens 128] [--limit N] [--chain-k 3] [--tree TOPK:DEPTH:TOKENS]
      [--write-docs [--docs docs/benchmarks.md]] [--plot docs/img/drafter_tau.png]
      [--save-json F]

For every prompt of --prompts (default samples/prompts/eval.jsonl: the first user message
of each line, sent with --chat; its `category` groups the results) three runs of
BUILD/eyrie generate --json, back to back, all greedy, batch 1, --threads threads,
exactly --max-tokens tokens (EOS ignored):

  plain  no drafter;
  chain  --drafter DIR --spec-method chain --spec-k K;
  tree   --drafter DIR --spec-method tree (the engine's default shape unless --tree
         TOPK:DEPTH:TOKENS gives --spec-topk/--spec-depth/--spec-tokens).

Speculative output must equal plain output (text and token ids): mismatches are counted,
printed, and make the script exit 1 at the end. Reported: decode tokens/s per config
(sum of (completion tokens - 1) / sum of decode time; the first token comes from the
prefill) and the ratio to plain; tau = 1 + accepted / rounds overall and per prompt
category; acceptance rate = accepted / drafted (the engine's accept_rate; for a tree,
drafted counts every non-root node); per-position acceptance = the spec object's
per_position[i] (fraction of rounds whose drafts 0..i were all accepted) weighted by rounds.

Prints markdown tables and writes a plot (--plot; '' for none; matplotlib:
pip install -r scripts/deps/bench-pip.txt); with --write-docs replaces the section of
--docs between <!-- bench_drafter:begin --> and <!-- bench_drafter:end --> (inserted after
the bench_spec section when missing)."""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spec import DEFAULT_MODEL, ROOT, agg, eyrie_gen, load_avg, machine, sh  # noqa: E402
from bench_spec import END as SPEC_END  # noqa: E402

BEGIN, END = "<!-- bench_drafter:begin -->", "<!-- bench_drafter:end -->"
CONFIGS = ("plain", "chain", "tree")


def load_prompts(path, limit):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            j = json.loads(line)
            user = [m["content"] for m in j["messages"] if m.get("role") == "user"]
            if not user:
                sys.exit(f"{path}:{n}: no user message")
            out.append({"id": j.get("id", str(n)), "category": j.get("category", "-"), "prompt": user[0]})
            if limit and len(out) >= limit:
                break
    return out


def tree_defaults(build):
    """The engine's default tree shape (topk, depth, tokens), read from `generate --help`."""
    r = subprocess.run([os.path.join(build, "eyrie"), "generate", "--help"], capture_output=True, text=True)
    txt = r.stdout + r.stderr
    vals = []
    for flag in ("--spec-topk", "--spec-depth", "--spec-tokens"):
        m = re.search(re.escape(flag) + r"\b[^\n]*\(default (\d+)\)", txt)
        vals.append(m.group(1) if m else "?")
    return "/".join(vals)


def run_one(a, p, extra):
    j = eyrie_gen(a, p["prompt"], a.threads, extra)
    run = {"tokens": j["usage"]["completion_tokens"], "decode_ms": j["timing"]["decode_ms"],
           "text": j["text"], "token_ids": j["token_ids"]}
    if "spec" in j:
        s = j["spec"]
        run.update({k: s[k] for k in ("rounds", "drafted", "accepted", "per_position", "draft_ms",
                                       "verify_ms")})
    return run


def first_diff(x, y):
    for i, (u, v) in enumerate(zip(x, y)):
        if u != v:
            return i
    return min(len(x), len(y))


def spec_stats(runs):
    rounds = sum(r["rounds"] for r in runs)
    drafted = sum(r["drafted"] for r in runs)
    acc = sum(r["accepted"] for r in runs)
    npos = max((len(r["per_position"]) for r in runs), default=0)
    pos = []
    for i in range(npos):
        w = sum(r["rounds"] for r in runs if len(r["per_position"]) > i)
        pos.append(sum(r["per_position"][i] * r["rounds"] for r in runs if len(r["per_position"]) > i)
                   / w if w else 0.0)
    return {"rounds": rounds, "tau": 1 + acc / rounds if rounds else float("nan"),
            "accept_rate": acc / drafted if drafted else 0.0,
            "drafted_per_round": drafted / rounds if rounds else 0.0,
            "draft_ms": sum(r["draft_ms"] for r in runs) / rounds if rounds else 0.0,
            "verify_ms": sum(r["verify_ms"] for r in runs) / rounds if rounds else 0.0,
            "per_position": pos}


def summarize(results, prompts):
    """results[cfg] = list of runs (prompt order) -> overall and per-category statistics."""
    plain_tps = agg(results["plain"])
    overall = {}
    for c in CONFIGS:
        s = {"tok_s": agg(results[c])}
        s["ratio"] = s["tok_s"] / plain_tps
        if c != "plain":
            s.update(spec_stats(results[c]))
            s["same"] = sum(r["same"] for r in results[c])
        s["n"] = len(results[c])
        overall[c] = s
    cats = []
    for p in prompts:
        if p["category"] not in cats:
            cats.append(p["category"])
    per_cat = {}
    for cat in cats:
        idx = [i for i, p in enumerate(prompts) if p["category"] == cat]
        sel = {c: [results[c][i] for i in idx] for c in CONFIGS}
        ptps = agg(sel["plain"])
        per_cat[cat] = {"n": len(idx), "plain_tok_s": ptps}
        for c in ("chain", "tree"):
            st = spec_stats(sel[c])
            per_cat[cat][c] = {"tau": st["tau"], "accept_rate": st["accept_rate"],
                               "ratio": agg(sel[c]) / ptps}
    return overall, per_cat


def overall_table(overall, labels):
    lines = ["| decoding | decode tok/s | vs plain | τ | acceptance rate | drafted / round | "
             "draft ms / round | verify ms / round | output = plain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in CONFIGS:
        s = overall[c]
        if c == "plain":
            lines.append(f"| {labels[c]} | {s['tok_s']:.1f} | 1.00 | – | – | – | – | – | – |")
        else:
            lines.append(f"| {labels[c]} | {s['tok_s']:.1f} | {s['ratio']:.2f} | {s['tau']:.2f} | "
                         f"{100 * s['accept_rate']:.1f} % | {s['drafted_per_round']:.1f} | "
                         f"{s['draft_ms']:.2f} | {s['verify_ms']:.2f} | {s['same']}/{s['n']} |")
    return "\n".join(lines)


def category_table(per_cat, overall):
    lines = ["| category | prompts | plain tok/s | chain τ | chain vs plain | tree τ | tree vs plain |",
             "|---|---|---|---|---|---|---|"]
    for cat, s in per_cat.items():
        lines.append(f"| {cat} | {s['n']} | {s['plain_tok_s']:.1f} | {s['chain']['tau']:.2f} | "
                     f"{s['chain']['ratio']:.2f} | {s['tree']['tau']:.2f} | {s['tree']['ratio']:.2f} |")
    lines.append(f"| **all** | {overall['plain']['n']} | {overall['plain']['tok_s']:.1f} | "
                 f"{overall['chain']['tau']:.2f} | {overall['chain']['ratio']:.2f} | "
                 f"{overall['tree']['tau']:.2f} | {overall['tree']['ratio']:.2f} |")
    return "\n".join(lines)


def position_table(overall):
    ch, tr = overall["chain"]["per_position"], overall["tree"]["per_position"]
    lines = ["| draft position | chain: rounds with drafts 1..i accepted | tree: rounds with depth ≥ i accepted |",
             "|---|---|---|"]
    for i in range(max(len(ch), len(tr))):
        c = f"{100 * ch[i]:.1f} %" if i < len(ch) else "–"
        t = f"{100 * tr[i]:.1f} %" if i < len(tr) else "–"
        lines.append(f"| {i + 1} | {c} | {t} |")
    return "\n".join(lines)


def plot(overall, per_cat, labels, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c, color in (("chain", "tab:blue"), ("tree", "tab:orange")):
        pp = overall[c]["per_position"]
        ax.plot(range(1, len(pp) + 1), pp, "-o", color=color, ms=4,
                label=f"{labels[c]} (τ = {overall[c]['tau']:.2f})")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("draft position i")
    ax.set_ylabel("fraction of rounds with drafts 1..i accepted")
    ax.set_ylim(0, 1.02)
    ax.set_title("Per-position acceptance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    cats = list(per_cat)
    x = list(range(len(cats)))
    w = 0.38
    for k, (c, color) in enumerate((("chain", "tab:blue"), ("tree", "tab:orange"))):
        ax2.bar([i + (k - 0.5) * w for i in x], [per_cat[cat][c]["tau"] for cat in cats], w,
                color=color, label=labels[c])
    ax2.axhline(1, color="grey", lw=1, ls="--")
    ax2.set_xticks(x)
    ax2.set_xticklabels(cats, rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("τ = 1 + accepted / rounds")
    ax2.set_title("Mean acceptance length per prompt category")
    ax2.grid(alpha=0.3, axis="y")
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(path, section):
    text = open(path).read()
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        text = pre + block + rest.split(END, 1)[1]
    elif SPEC_END in text:
        # after the bench_spec section, including the prose that follows its end marker:
        # before the next "## " heading (or right after the marker when none follows)
        pre, post = text.split(SPEC_END, 1)
        m = re.search(r"^## ", post, re.M)
        if m:
            text = pre + SPEC_END + post[:m.start()] + block + "\n\n" + post[m.start():]
        else:
            text = pre + SPEC_END + "\n\n" + block + "\n" + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drafter", required=True, help="trained EAGLE-3 drafter directory")
    ap.add_argument("--build", default="build", help="build directory (default build)")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", default=os.path.join(ROOT, "samples", "prompts", "eval.jsonl"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N prompts")
    ap.add_argument("--chain-k", type=int, default=3)
    ap.add_argument("--tree", help="TOPK:DEPTH:TOKENS (default: the engine's defaults)")
    ap.add_argument("--drafter-quant", help="none | q8_0 | q4_1 (default: the engine's)")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "img", "drafter_tau.png"),
                    help="plot file ('' for none)")
    ap.add_argument("--save-json", help="write all raw results to this file")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="file --write-docs edits (default docs/benchmarks.md)")
    a = ap.parse_args()
    if not os.path.isabs(a.build):
        a.build = os.path.join(ROOT, a.build)
    if not os.path.isdir(a.drafter):
        sys.exit(f"no drafter directory {a.drafter}")
    prompts = load_prompts(a.prompts, a.limit)

    tree_flags = ["--drafter", a.drafter, "--spec-method", "tree"]
    if a.tree:
        try:
            topk, depth, tokens = (int(x) for x in a.tree.split(":"))
        except ValueError:
            sys.exit("--tree wants TOPK:DEPTH:TOKENS")
        tree_flags += ["--spec-topk", str(topk), "--spec-depth", str(depth), "--spec-tokens", str(tokens)]
        tree_label = f"tree {topk}/{depth}/{tokens}"
    else:
        tree_label = f"tree {tree_defaults(a.build)} (engine default)"
    flags = {"plain": [],
             "chain": ["--drafter", a.drafter, "--spec-method", "chain", "--spec-k", str(a.chain_k)],
             "tree": tree_flags}
    if a.drafter_quant:
        flags["chain"] += ["--drafter-quant", a.drafter_quant]
        flags["tree"] += ["--drafter-quant", a.drafter_quant]
    labels = {"plain": "plain", "chain": f"chain k={a.chain_k}", "tree": tree_label}

    argv = shlex.join(sys.argv[1:])
    cmdline = f"python3 scripts/bench_drafter.py{' ' + argv if argv else ''}"
    meta = {"cpu": machine(), "date": datetime.date.today().isoformat(),
            "commit": sh(f"git -C {ROOT} rev-parse --short HEAD") +
            (" (with uncommitted changes)" if sh(f"git -C {ROOT} status --porcelain -uno") else ""),
            "load_start": load_avg(), "cmd": cmdline, "model": os.path.basename(a.model),
            "drafter": a.drafter, "threads": a.threads, "max_tokens": a.max_tokens,
            "prompts": os.path.relpath(a.prompts, ROOT), "n_prompts": len(prompts), "labels": labels}
    print(f"{meta['cpu']}; load average at start {meta['load_start']}; {len(prompts)} prompts",
          file=sys.stderr, flush=True)

    results = {c: [] for c in CONFIGS}
    mismatches = []
    for n, p in enumerate(prompts, 1):
        line = []
        for c in CONFIGS:
            r = run_one(a, p, flags[c])
            r["id"], r["category"] = p["id"], p["category"]
            if c == "plain":
                ref = r
            else:
                r["same"] = (r["text"], r["token_ids"]) == (ref["text"], ref["token_ids"])
                if not r["same"]:
                    i = first_diff(r["token_ids"], ref["token_ids"])
                    mismatches.append((p["id"], c, i))
                    print(f"MISMATCH {p['id']} {labels[c]}: first differing token at {i}\n"
                          f"  plain: {ref['text']!r}\n  {c}: {r['text']!r}", file=sys.stderr)
            results[c].append(r)
            tps = (r["tokens"] - 1) * 1000.0 / r["decode_ms"] if r["decode_ms"] > 0 else 0.0
            if c == "plain":
                line.append(f"plain {tps:.1f} tok/s")
            else:
                tau = 1 + r["accepted"] / r["rounds"] if r["rounds"] else float("nan")
                line.append(f"{c} {tps:.1f} tok/s τ {tau:.2f}{'' if r['same'] else ' MISMATCH'}")
        print(f"[{n}/{len(prompts)}] {p['id']} ({p['category']}): " + "; ".join(line),
              file=sys.stderr, flush=True)
    meta["load_end"] = load_avg()

    overall, per_cat = summarize(results, prompts)
    if a.save_json:
        with open(a.save_json, "w") as f:
            json.dump({"meta": meta, "overall": overall, "per_category": per_cat, "runs": results},
                      f, indent=1)

    build_rel = os.path.relpath(a.build, ROOT)
    out = ["## Trained EAGLE-3 drafter on the held-out prompts\n",
           f"```\n{cmdline}\n```\n",
           f"{meta['model']}, drafter `{a.drafter}`, eyrie CPU backend. {meta['cpu']}; {meta['date']}, "
           f"commit {meta['commit']}; load average (1/5/15 min) {meta['load_start']} at the start, "
           f"{meta['load_end']} at the end (one run, no repetitions).\n",
           f"`{build_rel}/eyrie generate --json` on the {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} of `{meta['prompts']}` "
           f"(first user message, `--chat`), greedy, batch 1, {a.threads} thread{'s' if a.threads > 1 else ''}, "
           f"{a.max_tokens} tokens with EOS ignored; per prompt plain, chain and tree run back to back. "
           f"Decode tok/s = (tokens − 1) / decode time summed over the prompts; τ = 1 + accepted / rounds; "
           f"acceptance rate = accepted / drafted (a tree drafts every non-root node); "
           f"\"output = plain\" counts runs whose text and token ids equal the plain run's.\n",
           overall_table(overall, labels) + "\n",
           "**Per prompt category** (τ, and decode tok/s relative to plain on the same prompts):\n",
           category_table(per_cat, overall) + "\n",
           "**Per draft position**: the fraction of rounds whose drafts 1..i were all accepted "
           "(`spec.per_position`, weighted by rounds; τ − 1 is the sum of the chain column).\n",
           position_table(overall) + "\n"]
    plot_ok = False
    if a.plot:
        try:
            plot(overall, per_cat, labels,
                 f"{meta['model']} + {os.path.basename(os.path.normpath(a.drafter))} — {len(prompts)} "
                 f"held-out prompts, {a.threads} thread{'s' if a.threads > 1 else ''}", a.plot)
            plot_ok = True
            print(f"plot: {a.plot}", file=sys.stderr)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -r scripts/deps/bench-pip.txt)",
                  file=sys.stderr)
    if plot_ok:
        rel = os.path.relpath(os.path.abspath(a.plot), os.path.dirname(os.path.abspath(a.docs)))
        out.append(f"![drafter acceptance]({rel})\n")
    section = "\n".join(out).rstrip("\n")
    print(section)
    if a.write_docs:
        write_docs(a.docs, section)
        print(f"{a.docs} updated", file=sys.stderr)
    if mismatches:
        print(f"ERROR: {len(mismatches)} speculative run(s) differ from plain output: " +
              ", ".join(f"{i} {c} (token {t})" for i, c, t in mismatches), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
