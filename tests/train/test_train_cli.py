#!/usr/bin/env python3
"""End-to-end checks of `eyrie dump-hidden` and `eyrie train-drafter` on the
tiny chat fixture (issue 4):

  overfit  a few sequences, many epochs: step-0 accuracy reaches >= 95 % and
           the loss falls by more than 10x within a bounded number of steps;
  resume   N steps straight == N/2 steps (--stop-after), then the same
           command again; and == a run killed with SIGTERM mid-way and
           resumed: checkpoint.bin identical byte for byte (parameters,
           AdamW moments, step, run state) at the same thread count;
  online   the target runs inside training (dense teacher over the draft
           vocabulary): trains and exports;
  export   the exported drafter decodes through `eyrie generate --drafter`
           with output identical to the target alone (greedy);
  refuse   a checkpoint from other options is refused; bad arguments exit 2.

usage: test_train_cli.py EYRIE MODEL_DIR CONVS.jsonl
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

EYRIE, MODEL, CONVS = sys.argv[1:4]
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1


def run(args, expect=0, timeout=300):
    p = subprocess.run([EYRIE] + args, env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    if expect is not None and p.returncode != expect:
        print(p.stdout[-2000:], p.stderr[-4000:], sep="\n")
        raise SystemExit(f"FAIL eyrie {' '.join(args)}: exit {p.returncode}, expected {expect}")
    return p


def log_lines(run_dir):
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def read(path):
    with open(path, "rb") as f:
        return f.read()


tmp = tempfile.mkdtemp(prefix="eyrie-train-")
try:
    hid = os.path.join(tmp, "hidden")
    run(["dump-hidden", "--model", MODEL, "--data", CONVS, "--out", hid, "--topk", "16",
         "--threads", "1"])
    meta = json.load(open(os.path.join(hid, "meta.json")))
    check(meta["n_records"] == 9, f"dump-hidden wrote 9 records ({meta['n_records']})")

    common = ["--model", MODEL, "--hidden", hid, "--draft-vocab", "256", "--threads", "1",
              "--log-every", "1", "--no-export"]

    # ---- overfit: 4 sequences (batch 4 -> one step per epoch)
    ov = os.path.join(tmp, "overfit")
    hid4 = os.path.join(tmp, "hidden4")
    run(["dump-hidden", "--model", MODEL, "--data", CONVS, "--out", hid4, "--topk", "16",
         "--limit", "4", "--threads", "1"])
    run(["train-drafter", "--model", MODEL, "--hidden", hid4, "--out", ov, "--draft-vocab",
         "256", "--threads", "1", "--log-every", "1", "--no-export", "--batch", "4",
         "--epochs", "150", "--lr", "3e-3", "--warmup", "0.05", "--ttt-steps", "3"])
    lines = log_lines(ov)
    first, last = lines[0], lines[-1]
    best = max(l["acc"][0] for l in lines)
    check(len(lines) == 150, f"overfit ran 150 steps ({len(lines)})")
    check(last["acc"][0] >= 0.95,
          f"overfit: step-0 accuracy {last['acc'][0]:.3f} >= 0.95 after 150 steps "
          f"(first {first['acc'][0]:.3f}, best {best:.3f})")
    check(last["loss"][0] < first["loss"][0] / 10,
          f"overfit: step-0 loss {first['loss'][0]:.3f} -> {last['loss'][0]:.4f} (> 10x lower)")

    # ---- resume: 3 epochs of 9 sequences, batch 2 -> 15 steps
    opts = common + ["--batch", "2", "--epochs", "3", "--seed", "7"]
    a, b, c = (os.path.join(tmp, n) for n in ("straight", "halves", "killed"))
    run(["train-drafter", "--out", a] + opts)
    run(["train-drafter", "--out", b, "--stop-after", "7"] + opts)
    check(log_lines(b)[-1]["step"] == 7, "--stop-after 7 stops at step 7")
    p = run(["train-drafter", "--out", b] + opts)
    check("resumed from" in p.stderr and "at step 7" in p.stderr, "the rerun resumes at step 7")
    check(read(os.path.join(a, "checkpoint.bin")) == read(os.path.join(b, "checkpoint.bin")),
          "15 steps straight == 7 + resume 8: checkpoints identical byte for byte")
    steps_a = [l["step"] for l in log_lines(a)]
    steps_b = [l["step"] for l in log_lines(b)]
    check(steps_a == steps_b == list(range(1, 16)), "both logs cover steps 1..15 once")
    la = [l["loss"] for l in log_lines(a)]
    lb = [l["loss"] for l in log_lines(b)]
    check(la == lb, "per-step losses identical straight vs resumed")

    # killed with SIGTERM while running (a slow run: many epochs), then resumed
    kopts = common + ["--batch", "2", "--epochs", "40", "--seed", "7", "--save-every", "1000"]
    p = subprocess.Popen([EYRIE, "train-drafter", "--out", c] + kopts, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(os.path.join(c, "log.jsonl")) and len(log_lines(c)) >= 5:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    check(p.returncode == 130 and "interrupted at step" in err,
          f"SIGTERM: exit 130 with a saved checkpoint ({p.returncode})")
    killed_at = int(err.split("interrupted at step ")[1].split(";")[0])
    check(0 < killed_at < 180, f"killed mid-run at step {killed_at} of 180")
    run(["train-drafter", "--out", c] + kopts)
    d = os.path.join(tmp, "straight40")
    run(["train-drafter", "--out", d] + kopts)
    check(read(os.path.join(c, "checkpoint.bin")) == read(os.path.join(d, "checkpoint.bin")),
          f"killed at {killed_at} + resumed == straight 180 steps, byte for byte")

    # a checkpoint from other options is refused
    p = run(["train-drafter", "--out", a] + common + ["--batch", "3", "--epochs", "3",
                                                     "--seed", "7"], expect=1)
    check("other data or options" in p.stderr, "resume with other options is refused")

    # ---- online mode (dense teacher), export, decode losslessly
    on = os.path.join(tmp, "online")
    run(["train-drafter", "--model", MODEL, "--data", CONVS, "--out", on, "--draft-vocab",
         "256", "--threads", "1", "--batch", "3", "--epochs", "2", "--dtype", "f32"])
    dr = os.path.join(on, "drafter")
    cfg = json.load(open(os.path.join(dr, "config.json")))
    check(cfg.get("draft_vocab_size") == 256 and
          cfg.get("eagle_aux_hidden_state_layer_ids") == meta["aux_layers"],
          f"exported config: draft vocab 256, aux ids {cfg.get('eagle_aux_hidden_state_layer_ids')}"
          f" == dump-hidden's {meta['aux_layers']}")
    check(len(log_lines(on)) >= 1, "online mode logged its steps")
    base = run(["generate", "--model", MODEL, "--chat", "What is the capital of France?",
                "--max-tokens", "40", "--threads", "1"]).stdout
    spec = run(["generate", "--model", MODEL, "--chat", "What is the capital of France?",
                "--max-tokens", "40", "--threads", "1", "--drafter", dr]).stdout
    check(base.strip() != "" and base == spec,
          "the exported drafter loads and greedy output equals the target alone")

    # ---- bad arguments
    for args in (["train-drafter"], ["train-drafter", "--out", on],
                 ["train-drafter", "--out", on, "--hidden", hid, "--data", CONVS],
                 ["train-drafter", "--out", on, "--hidden", hid, "--lr", "-1"],
                 ["train-drafter", "--out", on, "--hidden", hid, "--ttt-steps", "99"]):
        p = run(args + ["--model", MODEL], expect=2)
        check(p.returncode == 2, "exit 2 for " + " ".join(args[1:]))
    p = run(["train-drafter", "--model", MODEL, "--out", os.path.join(tmp, "x"), "--hidden",
             os.path.join(tmp, "nope")], expect=1)
    check("nope" in p.stderr, "a missing hidden-state directory is a clear error")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
