#!/usr/bin/env python3
"""Generate tests/fixtures/models/chat-tiny/: a tiny random-weight Llama chat
model WITH a tokenizer and a ChatML chat template, for the daemon's
integration tests (tests/daemon/). numpy only.

    python3 scripts/make_daemon_fixtures.py [--out tests/fixtures/models/chat-tiny]

Writes:
    config.json             LlamaForCausalLM: hidden 64, 2 layers, 4/2 heads,
                            head_dim 16, ffn 128, vocab 1494 (the vocabulary
                            of tests/fixtures/tokenizer/qwen2_tiny), tied
                            embeddings
    model.safetensors       bf16 weights (about 350 KB)
    tokenizer.json          a copy of tests/fixtures/tokenizer/qwen2_tiny.tokenizer.json
    tokenizer_config.json   Qwen2-style: ChatML chat_template, eos <|im_end|>,
                            no BOS
    generation_config.json  eos_token_id = <|im_end|> (and <|endoftext|>)

Weights: embeddings N(0, 0.5^2) (tied: also the output projection, so logits
have a std of about 4 and greedy outputs vary across prompts), every other
matrix N(0, 0.15^2), RMSNorm weights 1 + N(0, 0.1^2). Deterministic (seed
4242): two runs give byte-identical files. The model talks nonsense; it may
emit <|im_end|> now and then, which ends a chat answer.
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "qwen2_tiny.tokenizer.json")

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN = 64, 2, 4, 2, 16, 128
SEED = 4242

# The Qwen2.5-Instruct template (ChatML with a default system prompt), as
# shipped in its tokenizer_config.json, without the tool-calling branches.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'system' and loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


def vocab_size(tok):
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok["added_tokens"]]
    return max(ids) + 1


def added_id(tok, content):
    for t in tok["added_tokens"]:
        if t["content"] == content:
            return t["id"]
    raise SystemExit("tokenizer has no %s" % content)


def bf16_bytes(a):
    """float32 -> bf16 (round to nearest even), little-endian bytes."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        b = bf16_bytes(a)
        header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "models", "chat-tiny"))
    args = ap.parse_args()
    with open(TOKENIZER, encoding="utf-8") as f:
        tok = json.load(f)
    V = vocab_size(tok)
    im_end, eot = added_id(tok, "<|im_end|>"), added_id(tok, "<|endoftext|>")
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(SEED)
    t = {"model.embed_tokens.weight": 0.5 * rng.standard_normal((V, HIDDEN))}
    for l in range(LAYERS):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(HIDDEN)
        t[p + "self_attn.q_proj.weight"] = 0.15 * rng.standard_normal((HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.k_proj.weight"] = 0.15 * rng.standard_normal((KV_HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.v_proj.weight"] = 0.15 * rng.standard_normal((KV_HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.o_proj.weight"] = 0.15 * rng.standard_normal((HIDDEN, HEADS * HEAD_DIM))
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(HIDDEN)
        t[p + "mlp.gate_proj.weight"] = 0.15 * rng.standard_normal((FFN, HIDDEN))
        t[p + "mlp.up_proj.weight"] = 0.15 * rng.standard_normal((FFN, HIDDEN))
        t[p + "mlp.down_proj.weight"] = 0.15 * rng.standard_normal((HIDDEN, FFN))
    t["model.norm.weight"] = 1 + 0.1 * rng.standard_normal(HIDDEN)
    write_safetensors(os.path.join(args.out, "model.safetensors"),
                      {k: v.astype(np.float32) for k, v in t.items()})

    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": eot,
        "eos_token_id": im_end,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": FFN,
        "max_position_embeddings": 2048,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": V,
    }
    gen = {"bos_token_id": eot, "eos_token_id": [im_end, eot], "do_sample": False}
    added = {str(a["id"]): {"content": a["content"], "lstrip": a["lstrip"],
                            "normalized": a["normalized"], "rstrip": a["rstrip"],
                            "single_word": a["single_word"], "special": a["special"]}
             for a in tok["added_tokens"]}
    tcfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    for name, obj in (("config.json", config), ("generation_config.json", gen),
                      ("tokenizer_config.json", tcfg)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")
    shutil.copyfile(TOKENIZER, os.path.join(args.out, "tokenizer.json"))
    size = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print("wrote %s (vocab %d, %d bytes)" % (args.out, V, size))


if __name__ == "__main__":
    main()
