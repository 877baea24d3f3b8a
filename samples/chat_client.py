#!/usr/bin/env python3
"""Stream a chat answer from eyried (wire protocol v1, docs/protocol.md).

    python3 samples/chat_client.py --url ipc:///run/eyrie/eyrie.sock "What is the capital of France?"

Prints the answer as it streams, then one stats line on stderr. Several
daemons: --url URL1,URL2 (one REQ socket dialled to each: requests are spread
over them and resent to the other one when a daemon goes away).

Needs (scripts/deps/samples-pip.txt, installed by scripts/setup.sh):
  pynng         NNG's Python binding; NNG speaks nanomsg's SP wire protocol
  protobuf      the message classes
  grpcio-tools  compiles proto/eyrie.proto at run time (else `protoc`, if installed)

The Python module for eyrie.proto is generated on first use into
$EYRIE_CACHE/py-proto/<hash>/ (default ~/.cache/eyrie) and reused while the
.proto file is unchanged.
"""
import argparse
import codecs
import hashlib
import importlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "proto", "eyrie.proto")
MAX_MESSAGE = 64 * 1024 * 1024 + 64 * 1024  # the daemon's default limit + headroom


def load_proto(proto_path=PROTO):
    """Import eyrie_pb2, compiling proto_path first if the cache lacks it."""
    with open(proto_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.environ.get("EYRIE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "eyrie")
    out = os.path.join(cache, "py-proto", digest)
    if not os.path.exists(os.path.join(out, "eyrie_pb2.py")):
        os.makedirs(out, exist_ok=True)
        tmp = out + ".tmp%d" % os.getpid()
        os.makedirs(tmp, exist_ok=True)
        src = os.path.dirname(os.path.abspath(proto_path))
        args = ["-I" + src, "--python_out=" + tmp, os.path.abspath(proto_path)]
        try:
            from grpc_tools import protoc  # bundles a protoc matching the protobuf runtime
            rc = protoc.main(["protoc"] + args)
        except ImportError:
            exe = shutil.which("protoc")
            if not exe:
                sys.exit("chat_client: needs grpcio-tools (pip) or protoc to compile eyrie.proto")
            rc = subprocess.call([exe] + args)
        if rc != 0:
            sys.exit("chat_client: compiling %s failed" % proto_path)
        os.replace(os.path.join(tmp, "eyrie_pb2.py"), os.path.join(out, "eyrie_pb2.py"))
        shutil.rmtree(tmp, ignore_errors=True)
    sys.path.insert(0, out)
    return importlib.import_module("eyrie_pb2")


class DaemonError(Exception):
    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message) if message else code)
        self.code = code


class Client:
    """A REQ socket dialled to every URL; one request in flight at a time."""

    def __init__(self, pb, urls, timeout_ms=300000, resend_ms=60000):
        import pynng

        self.pb = pb
        self.timeout_ms = timeout_ms
        self.sock = pynng.Req0(recv_max_size=MAX_MESSAGE, send_timeout=timeout_ms,
                               resend_time=resend_ms)
        for url in urls.split(","):
            if url.startswith("ipc://") and len(url) - 6 > 107:
                raise ValueError("ipc path longer than 107 bytes: " + url)
            self.sock.dial(url, block=False)  # connects (and reconnects) in the background
        self.prefix = "py-%x-%08x" % (os.getpid(), random.getrandbits(32))
        self.counter = 0

    def new_id(self):
        self.counter += 1
        return "%s-%x" % (self.prefix, self.counter)

    def call(self, timeout_ms=None, req_id=None, **body):
        pb = self.pb
        req = pb.Request(version=pb.PROTOCOL_VERSION, id=req_id or self.new_id(), **body)
        self.sock.recv_timeout = timeout_ms or self.timeout_ms
        self.sock.send(req.SerializeToString())
        resp = pb.Response()
        resp.ParseFromString(self.sock.recv())
        if resp.HasField("error") and resp.error.code != pb.ERR_NONE:
            raise DaemonError(pb.ErrorCode.Name(resp.error.code), resp.error.message)
        return resp

    def close(self):
        self.sock.close()


def chat_generate(pb, args):
    messages = []
    if args.system:
        messages.append(pb.Message(role=pb.ROLE_SYSTEM, parts=[pb.Part(text=args.system)]))
    messages.append(pb.Message(role=pb.ROLE_USER, parts=[pb.Part(text=args.question)]))
    g = pb.Generate(task=pb.TASK_CHAT, messages=messages, stream=True)
    if args.max_tokens is not None:
        g.max_tokens = args.max_tokens
    if args.temperature is not None:
        g.sampling.temperature = args.temperature
    if args.seed is not None:
        g.sampling.seed = args.seed
    return g


def stats_line(pb, r, wall_s):
    s = "%d prompt + %d completion tokens, %s, prefill %.1f ms, decode %.1f ms, %.2f s total" % (
        r.usage.prompt_tokens, r.usage.completion_tokens,
        pb.FinishReason.Name(r.finish_reason).replace("FINISH_", "").lower(),
        r.timings.prefill_ms, r.timings.decode_ms, wall_s)
    if r.timings.HasField("queue_ms"):
        s += ", queued %.1f ms" % r.timings.queue_ms
    if r.HasField("spec"):
        s += ", spec %s tau %.2f (%d/%d drafts accepted)" % (
            r.spec.method, r.spec.mean_accept_len, r.spec.accepted, r.spec.drafted)
    return s


def main():
    ap = argparse.ArgumentParser(description="Stream a chat answer from eyried.")
    ap.add_argument("question")
    ap.add_argument("--url", default=os.environ.get("EYRIE_URL"),
                    help="daemon URL(s), comma-separated (default $EYRIE_URL)")
    ap.add_argument("--system", help="system prompt")
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--timeout", type=int, default=300000, help="per-call timeout, ms")
    ap.add_argument("--proto", default=PROTO, help="path of eyrie.proto")
    args = ap.parse_args()
    if not args.url:
        ap.error("--url is required (or set EYRIE_URL)")

    pb = load_proto(args.proto)
    try:
        import pynng  # noqa: F401
    except ImportError:
        sys.exit("chat_client: needs pynng (pip install -r scripts/deps/samples-pip.txt)")
    client = Client(pb, args.url, timeout_ms=args.timeout)
    job = None
    t0 = time.monotonic()
    try:
        req_id = client.new_id()  # the idempotency key: a resend never runs the job twice
        resp = client.call(req_id=req_id, generate=chat_generate(pb, args))
        job = resp.accepted.job_id
        after = 0
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            resp = client.call(timeout_ms=args.timeout + 1000,
                               poll=pb.Poll(job_id=job, after=after, wait_ms=1000))
            p = resp.poll
            if p.text:
                sys.stdout.write(utf8.decode(p.text))
                sys.stdout.flush()
            after = p.next if p.HasField("next") else after + len(p.text)
            if p.done:
                sys.stdout.write(utf8.decode(b"", final=True) + "\n")
                print(stats_line(pb, p.result, time.monotonic() - t0), file=sys.stderr)
                return 0
    except KeyboardInterrupt:
        if job:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                client.call(timeout_ms=2000, cancel=pb.Cancel(job_id=job))
                print("\nchat_client: interrupted; job %s cancelled" % job, file=sys.stderr)
            except Exception:
                pass
        return 130
    except DaemonError as e:
        print("\nchat_client: daemon: %s" % e, file=sys.stderr)
        return 1
    except Exception as e:  # pynng.Timeout and friends
        print("\nchat_client: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
