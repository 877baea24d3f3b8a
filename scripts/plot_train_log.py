#!/usr/bin/env python3
"""Plot an `eyrie train-drafter` log: loss and top-1 accuracy per unrolled step.

  python3 scripts/plot_train_log.py RUN/log.jsonl OUT.png [--title TEXT]

Reads the per-step lines of log.jsonl (the evaluation lines are listed in the title) and
draws two panels: step-0..K-1 loss and accuracy against the optimizer step. Needs
matplotlib (pip install -r scripts/deps/bench-pip.txt)."""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--title", default="eyrie train-drafter")
    a = ap.parse_args()
    rows, evals = [], []
    with open(a.log) as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            (evals if "eval_tau" in d else rows).append(d)
    if not rows:
        raise SystemExit("no training lines in " + a.log)
    K = len(rows[0]["acc"])
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for j in range(K):
        ax[0].plot(steps, [r["loss"][j] for r in rows], label=f"step {j}", lw=1)
        ax[1].plot(steps, [100 * r["acc"][j] for r in rows], label=f"step {j}", lw=1)
    ax[0].set_xlabel("optimizer step")
    ax[0].set_ylabel("soft cross-entropy (nats)")
    ax[1].set_xlabel("optimizer step")
    ax[1].set_ylabel("top-1 accuracy vs the target (%)")
    ax[1].legend(fontsize=8)
    for x in ax:
        x.grid(alpha=0.3)
    title = a.title
    if evals:
        title += "; held-out tau " + ", ".join(f"{e['eval_tau']:.2f} (step {e['step']})"
                                               for e in evals)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
