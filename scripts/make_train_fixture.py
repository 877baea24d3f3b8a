#!/usr/bin/env python3
"""Generate the torch-autograd reference for eyrie's EAGLE-3 drafter trainer
(train/e3_train.c), read by tests/train/test_e3t_torch.c.

Developer-only script: needs torch and safetensors. CI never runs it; the
test only reads the committed fixture. Regenerate with

    python3 scripts/make_train_fixture.py [--out tests/fixtures/train/grad_tiny.safetensors]

A tiny configuration (H=32, 3 aux captures of width 32, 4 heads / 2 KV heads
of dim 8, MLP 48, vocab 64, draft vocab 24, K=4 unrolled steps, decay 0.8,
T=11), random frozen embedding, draft vocabulary, parameters, sequence, loss
mask, aux captures and a sparse teacher (kmax=6 (id, logit) pairs per row).
The training-time-test forward of docs/eagle3.md §3 (exactly the math of
train/e3_train.h) runs in float64 from the float32-rounded stored values,
and torch autograd gives the gradient of the total loss
    sum_j decay^j * (sum over counted rows of CE_j) / T
w.r.t. every trainable tensor. Saved (float32 / int32):
  dims [H, n_aux, Ht, nh, nkv, hd, I, V, Vd, K, T, kmax]
  hparams [eps, decay, rope_theta]
  embed [V][H], sel [Vd]
  every parameter under its published name, its gradient as "grad." + name
  ids, mask, aux, n_teach, teach_ids, teach_logits, top1 (teacher padding: id -1, logit 0)
  logits0 [T][Vd] (step-0 logits), loss_total [1], loss_step [K]
  (sum over counted rows of CE, not divided), counted [K], correct [K]
"""
import argparse
import math
import os

import torch
from safetensors.torch import save_file

H, N_AUX, HT, NH, NKV, HD, I, V, VD = 32, 3, 32, 4, 2, 8, 48, 64, 24
EPS, THETA, K, DECAY, T, KMAX = 1e-6, 10000.0, 4, 0.8, 11, 6

NAMES = [
    ("fc.weight", (H, N_AUX * HT)),
    ("midlayer.hidden_norm.weight", (H,)),
    ("midlayer.input_layernorm.weight", (H,)),
    ("midlayer.self_attn.q_proj.weight", (NH * HD, 2 * H)),
    ("midlayer.self_attn.k_proj.weight", (NKV * HD, 2 * H)),
    ("midlayer.self_attn.v_proj.weight", (NKV * HD, 2 * H)),
    ("midlayer.self_attn.o_proj.weight", (H, NH * HD)),
    ("midlayer.post_attention_layernorm.weight", (H,)),
    ("midlayer.mlp.gate_proj.weight", (I, H)),
    ("midlayer.mlp.up_proj.weight", (I, H)),
    ("midlayer.mlp.down_proj.weight", (H, I)),
    ("norm.weight", (H,)),
    ("lm_head.weight", (VD, H)),
]

F64 = torch.float64


def f32r(x):
    """float32-rounded copy in float64 (the C side sees the stored f32 values)."""
    return x.to(torch.float32).to(F64)


def make_inputs(g):
    embed = f32r(torch.randn(V, H, generator=g, dtype=F64))
    sel = torch.sort(torch.randperm(V, generator=g)[:VD]).values
    params = {}
    for name, shape in NAMES:
        if len(shape) == 1:
            p = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=F64)
        else:
            p = 0.2 * torch.randn(shape, generator=g, dtype=F64)
        params[name] = f32r(p)
    ids = torch.randint(0, V, (T,), generator=g)
    mask = torch.ones(T, dtype=torch.int64)
    mask[0] = 0
    mask[3] = 0
    mask[7] = 0
    aux = f32r(torch.randn(T, N_AUX * HT, generator=g, dtype=F64))
    in_vocab = torch.zeros(V, dtype=torch.bool)
    in_vocab[sel] = True
    vocab_ids = sel.tolist()
    out_ids = [i for i in range(V) if not in_vocab[i]]
    n_teach = torch.zeros(T, dtype=torch.int64)
    teach_ids = torch.full((T, KMAX), -1, dtype=torch.int64)
    teach_logits = torch.zeros(T, KMAX, dtype=F64)
    top1 = torch.zeros(T, dtype=torch.int64)
    # rows whose top-1 lies outside the draft vocab (teacher rows r = t+1+j
    # that would otherwise count: mask[r+1] == 1)
    outside_rows = {5, 9}
    for r in range(T):
        n = 1 + int(torch.randint(0, KMAX, (1,), generator=g))
        if r in outside_rows:
            n = max(n, 3)
        if r in (2, 6, 8):  # rows mixing in- and out-of-vocab entries
            n = KMAX
        # distinct ids, a mix of in- and out-of-vocab
        n_in = max(1, n - 1 - int(torch.randint(0, 2, (1,), generator=g))) if n > 1 else 1
        n_out = n - n_in
        pi = torch.randperm(len(vocab_ids), generator=g)[:n_in].tolist()
        po = torch.randperm(len(out_ids), generator=g)[:n_out].tolist()
        ids_r = [vocab_ids[i] for i in pi] + [out_ids[i] for i in po]
        lg = 2.0 * torch.randn(n, generator=g, dtype=F64)
        # decide the top-1: in vocab except in outside_rows
        want_out = r in outside_rows and n_out > 0
        cand = [k for k in range(n) if in_vocab[ids_r[k]] != want_out]
        best = cand[int(torch.randint(0, len(cand), (1,), generator=g))]
        lg[best] = lg.max() + 0.5 + float(torch.rand(1, generator=g))
        perm = torch.randperm(n, generator=g).tolist()
        ids_r = [ids_r[k] for k in perm]
        lg = f32r(lg[perm])
        n_teach[r] = n
        teach_ids[r, :n] = torch.tensor(ids_r)
        teach_logits[r, :n] = lg
        top1[r] = ids_r[int(torch.argmax(lg))]
    return dict(embed=embed, sel=sel, params=params, ids=ids, mask=mask, aux=aux,
                n_teach=n_teach, teach_ids=teach_ids, teach_logits=teach_logits, top1=top1,
                in_vocab=in_vocab)


def rmsnorm(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def rope(x, pos):
    """x [T, heads, hd], NeoX rotate-half at positions pos [T]."""
    half = HD // 2
    inv = THETA ** (-2.0 * torch.arange(half, dtype=F64) / HD)
    ang = pos.to(F64)[:, None] * inv[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def forward(d, P):
    embed, sel, ids, mask, aux = d["embed"], d["sel"], d["ids"], d["mask"], d["aux"]
    d_of = torch.full((V,), -1, dtype=torch.int64)
    d_of[sel] = torch.arange(VD)
    f = aux @ P["fc.weight"].T
    scale = 1.0 / math.sqrt(HD)
    grp = NH // NKV
    K0 = V0 = None
    diag_k, diag_v = [], []
    total = torch.zeros((), dtype=F64)
    out = dict(loss_step=[], counted=[], correct=[], z=[], margins=[])
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for j in range(K):
        tok = torch.tensor([int(ids[t + 1 + j]) if t + 1 + j < T else 0 for t in range(T)])
        e = embed[tok]
        en = rmsnorm(e, P["midlayer.input_layernorm.weight"])
        hn = rmsnorm(f, P["midlayer.hidden_norm.weight"])
        u = torch.cat([en, hn], -1)
        pos = torch.arange(T) + j
        q = rope((u @ P["midlayer.self_attn.q_proj.weight"].T).view(T, NH, HD), pos)
        k = rope((u @ P["midlayer.self_attn.k_proj.weight"].T).view(T, NKV, HD), pos)
        v = (u @ P["midlayer.self_attn.v_proj.weight"].T).view(T, NKV, HD)
        if j == 0:
            K0, V0 = k, v
        else:
            diag_k.append(k)
            diag_v.append(v)
        att = torch.zeros(T, NH, HD, dtype=F64)
        for h in range(NH):
            kh = h // grp
            qh = q[:, h, :]  # [T, hd]
            s0 = (qh @ K0[:, kh, :].T) * scale  # [T, T]
            s0 = s0.masked_fill(~causal, float("-inf"))
            sd = [(qh * dk[:, kh, :]).sum(-1, keepdim=True) * scale for dk in diag_k]
            s = torch.cat([s0] + sd, -1)
            p = torch.softmax(s, -1)
            a = p[:, :T] @ V0[:, kh, :]
            for i, dv in enumerate(diag_v):
                a = a + p[:, T + i:T + i + 1] * dv[:, kh, :]
            att[:, h, :] = a
        o = att.reshape(T, NH * HD) @ P["midlayer.self_attn.o_proj.weight"].T
        r1 = f + o
        pn = rmsnorm(r1, P["midlayer.post_attention_layernorm.weight"])
        m = (torch.nn.functional.silu(pn @ P["midlayer.mlp.gate_proj.weight"].T)
             * (pn @ P["midlayer.mlp.up_proj.weight"].T)) @ P["midlayer.mlp.down_proj.weight"].T
        gout = r1 + m
        z = rmsnorm(gout, P["norm.weight"]) @ P["lm_head.weight"].T
        out["z"].append(z)
        ls = torch.log_softmax(z, -1)
        loss_j = torch.zeros((), dtype=F64)
        cnt = cor = 0
        for t in range(T):
            r = t + 1 + j
            if not (t + 2 + j < T and int(mask[t + 2 + j]) == 1 and int(d_of[d["top1"][r]]) >= 0):
                continue
            n = int(d["n_teach"][r])
            tid = d["teach_ids"][r, :n]
            tl = d["teach_logits"][r, :n]
            keep = d_of[tid] >= 0
            Pv = torch.softmax(tl[keep], -1)
            ce = -(Pv * ls[t, d_of[tid[keep]]]).sum()
            loss_j = loss_j + ce
            cnt += 1
            zs = torch.sort(z[t].detach(), descending=True).values
            out["margins"].append(float(zs[0] - zs[1]))
            if int(torch.argmax(z[t])) == int(d_of[d["top1"][r]]):
                cor += 1
        out["loss_step"].append(loss_j)
        out["counted"].append(cnt)
        out["correct"].append(cor)
        total = total + DECAY ** j * loss_j / T
        f = gout
    out["total"] = total
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures", "train", "grad_tiny.safetensors"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    seed = args.seed
    while True:
        g = torch.Generator().manual_seed(seed)
        d = make_inputs(g)
        P = {n: p.clone().requires_grad_(True) for n, p in d["params"].items()}
        out = forward(d, P)
        # argmax comparisons need a clear top-1 on every counted row
        if min(out["margins"]) > 2e-3 and all(c > 0 for c in out["counted"]):
            break
        print(f"seed {seed}: min margin {min(out['margins']):.2e}, retrying")
        seed += 1
    out["total"].backward()
    print(f"seed {seed}: total loss {float(out['total'].detach()):.6f}, per step "
          f"{[round(float(x.detach()), 4) for x in out['loss_step']]}, counted {out['counted']}, "
          f"correct {out['correct']}, min margin {min(out['margins']):.3e}")
    i32 = lambda x: torch.as_tensor(x).to(torch.int32).contiguous()
    f32 = lambda x: torch.as_tensor(x).detach().to(torch.float32).contiguous()
    tens = {
        "dims": i32([H, N_AUX, HT, NH, NKV, HD, I, V, VD, K, T, KMAX]),
        "hparams": f32([EPS, DECAY, THETA]),
        "embed": f32(d["embed"]),
        "sel": i32(d["sel"]),
        "ids": i32(d["ids"]),
        "mask": i32(d["mask"]),
        "aux": f32(d["aux"]),
        "n_teach": i32(d["n_teach"]),
        "teach_ids": i32(d["teach_ids"]),
        "teach_logits": f32(d["teach_logits"]),
        "top1": i32(d["top1"]),
        "logits0": f32(out["z"][0]),
        "loss_total": f32([float(out["total"].detach())]),
        "loss_step": f32([float(x.detach()) for x in out["loss_step"]]),
        "counted": i32(out["counted"]),
        "correct": i32(out["correct"]),
    }
    for n, p in P.items():
        tens[n] = f32(p)
        tens["grad." + n] = f32(p.grad)
        print(f"  {n:44s} |g|max {float(p.grad.abs().max()):.3e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tens, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
