#!/usr/bin/env python3
"""Load benchmark of eyried: throughput and latency at 1, 4, 16, 64 concurrent
clients, without and with speculative decoding, on the default model.

    python3 scripts/bench_daemon.py [--build build] [--clients 1,4,16,64]
                                    [--max-tokens 64] [--drafter DIR] [--write-docs]

Each mode starts a fresh daemon (--threads 2 by default), warms it up, then for
each concurrency c runs c client threads (one REQ socket each) that send
greedy chat requests back to back until `--requests` requests (at least 2 per
client) are answered. Reported: completion tokens per second over the wall
time (aggregate throughput), p50/p99 request latency, mean tau, and the
spec/plain ratio. The drafter is `--drafter` or a random one written by
`eyrie drafter-init` (tau ~ 1: it shows what the daemon's back-off costs when
a drafter does not pay; issue 4 trains a real one). Greedy answers of both
modes are compared and must be identical.

With --write-docs the table, the command and a plot (docs/img/daemon_load.png)
go into docs/benchmarks.md between the bench_daemon markers.
Needs scripts/deps/samples-pip.txt (pynng, protobuf, grpcio-tools) and
matplotlib for the plot.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "samples"))
import chat_client  # noqa: E402  (load_proto, Client)

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about owls.",
    "List three uses of a paperclip.",
    "What is 17 times 23?",
    "Give me a short tip for learning a new language.",
    "Summarize the plot of Romeo and Juliet in one sentence.",
    "Write a Python function that reverses a string.",
    "Name three planets of the solar system.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish.",
    "Why do cats purr?",
]


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def start_daemon(build, model, drafter, sock, threads, log, extra):
    args = [os.path.join(build, "eyried"), "--listen", "ipc://" + sock, "--threads", str(threads),
            "--max-running", "64", "--log-file", log]
    if model:
        args += ["--model", model]
    if drafter:
        args += ["--drafter", drafter]
    args += extra
    p = subprocess.Popen(args)
    for _ in range(600):
        r = subprocess.run([os.path.join(build, "eyrie"), "health", "--url", "ipc://" + sock],
                           capture_output=True)
        if r.returncode == 0:
            return p
        if p.poll() is not None:
            sys.exit("eyried exited: see " + log)
        time.sleep(0.1)
    p.kill()
    sys.exit("eyried did not come up")


def run_load(pb, url, clients, total, max_tokens):
    lock = threading.Lock()
    lat, toks, taus, answers, errors = [], [0], [], {}, []
    counter = [0]

    def worker(w):
        c = chat_client.Client(pb, url, timeout_ms=600000)
        try:
            while True:
                with lock:
                    if counter[0] >= total:
                        return
                    i = counter[0]
                    counter[0] += 1
                q = PROMPTS[i % len(PROMPTS)]
                g = pb.Generate(task=pb.TASK_CHAT, max_tokens=max_tokens,
                                messages=[pb.Message(role=pb.ROLE_SYSTEM,
                                                     parts=[pb.Part(text="You are a helpful assistant.")]),
                                          pb.Message(role=pb.ROLE_USER, parts=[pb.Part(text=q)])])
                g.sampling.temperature = 0
                t0 = time.monotonic()
                try:
                    r = c.call(generate=g).result
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(str(e))
                    continue
                dt = time.monotonic() - t0
                with lock:
                    lat.append(dt)
                    toks[0] += r.usage.completion_tokens
                    if r.HasField("spec"):
                        taus.append(r.spec.mean_accept_len)
                    answers.setdefault(q, r.text)
        finally:
            c.close()

    ths = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.monotonic() - t0
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "wall_s": wall,
            "tok_s": toks[0] / wall, "p50": pct(lat, 50), "p99": pct(lat, 99),
            "tau": statistics.mean(taus) if taus else None, "answers": answers}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default="")
    ap.add_argument("--drafter", default="")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=32, help="requests per load level (min 2/client)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec-method", default="chain")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    pb = chat_client.load_proto()
    levels = [int(x) for x in a.clients.split(",")]
    tmp = tempfile.mkdtemp(prefix="eyrie-bench-", dir="/tmp")
    drafter = a.drafter
    if not drafter:
        drafter = os.path.join(tmp, "drafter")
        cmd = [os.path.join(a.build, "eyrie"), "drafter-init", "--out", drafter, "--seed", "1"]
        if a.model:
            cmd += ["--target", a.model]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    load = os.getloadavg()
    results = {}
    try:
        for mode in ("plain", "spec"):
            sock = os.path.join(tmp, mode + ".sock")
            log = os.path.join(tmp, mode + ".log")
            extra = ["--spec-method", a.spec_method] if mode == "spec" else []
            p = start_daemon(a.build, a.model, drafter if mode == "spec" else "", sock,
                             a.threads, log, extra)
            try:
                url = "ipc://" + sock
                run_load(pb, url, 1, 2, 8)  # warm-up
                for c in levels:
                    r = run_load(pb, url, c, max(a.requests, 2 * c), a.max_tokens)
                    results[(mode, c)] = r
                    print("%-5s clients %3d: %6.1f tok/s  p50 %6.2f s  p99 %6.2f s  tau %s  (%d req, %d err)"
                          % (mode, c, r["tok_s"], r["p50"], r["p99"],
                             "%.2f" % r["tau"] if r["tau"] else "-", r["requests"], r["errors"]),
                          flush=True)
            finally:
                p.send_signal(signal.SIGTERM)
                rc = p.wait(timeout=120)
                if rc != 0:
                    print("eyried (%s) exited %d" % (mode, rc), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = all(results[("plain", c)]["answers"].get(q) == results[("spec", c)]["answers"].get(q)
               for c in levels for q in results[("plain", c)]["answers"])
    rows = ["| clients | plain tok/s | spec tok/s | spec / plain | plain p50 / p99 (s) | spec p50 / p99 (s) | spec τ |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in levels:
        p_, s_ = results[("plain", c)], results[("spec", c)]
        rows.append("| %d | %.1f | %.1f | %.2f | %.2f / %.2f | %.2f / %.2f | %s |" % (
            c, p_["tok_s"], s_["tok_s"], s_["tok_s"] / p_["tok_s"], p_["p50"], p_["p99"],
            s_["p50"], s_["p99"], "%.2f" % s_["tau"] if s_["tau"] else "-"))
    table = "\n".join(rows)
    print(table)
    print("greedy answers identical with and without speculation:", same)
    if not same:
        sys.exit(1)
    if not a.write_docs:
        return
    png = os.path.join(ROOT, "docs", "img", "daemon_load.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for mode in ("plain", "spec"):
            ax[0].plot(levels, [results[(mode, c)]["tok_s"] for c in levels], "o-", label=mode)
            ax[1].plot(levels, [results[(mode, c)]["p50"] for c in levels], "o-", label=mode + " p50")
            ax[1].plot(levels, [results[(mode, c)]["p99"] for c in levels], "x--", label=mode + " p99")
        for x in ax:
            x.set_xscale("log", base=2)
            x.set_xlabel("concurrent clients")
            x.legend()
        ax[0].set_ylabel("completion tokens / s (all clients)")
        ax[1].set_ylabel("request latency (s)")
        fig.suptitle("eyried on SmolLM2-135M Q4_1, %d threads, %d tokens/request" % (a.threads, a.max_tokens))
        fig.tight_layout()
        os.makedirs(os.path.dirname(png), exist_ok=True)
        fig.savefig(png, dpi=100)
    except ImportError:
        png = None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    section = "\n".join([
        "<!-- bench_daemon:begin -->",
        "### Daemon under load (`scripts/bench_daemon.py`)",
        "",
        "`python3 scripts/bench_daemon.py --write-docs` — %s, %s, commit %s, load average at "
        "start %.2f; %d threads, greedy chat requests of %d tokens, %s drafter (`--spec-method %s`)."
        % (datetime.date.today().isoformat(), cpu, commit, load[0], a.threads, a.max_tokens,
           "given" if a.drafter else "random (`eyrie drafter-init`)", a.spec_method),
        "",
        table,
        "",
        "Greedy answers identical with and without speculation: %s." % ("yes" if same else "NO"),
        "",
        "![throughput and latency](img/daemon_load.png)" if png else "",
        "<!-- bench_daemon:end -->",
    ])
    doc = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(doc).read()
    if "<!-- bench_daemon:begin -->" in text:
        text = re.sub(r"<!-- bench_daemon:begin -->.*?<!-- bench_daemon:end -->", lambda m: section,
                      text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(doc, "w").write(text)
    print("wrote", doc)


if __name__ == "__main__":
    main()
