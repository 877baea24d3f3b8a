#!/usr/bin/env python3
"""Independent-engine reference for the real default model: llama.cpp's greedy output.

  pip install llama-cpp-python    # builds llama.cpp; developer machines only
  python3 scripts/make_llamacpp_fixtures.py [--model GGUF] > tests/fixtures/llamacpp/smollm2-greedy.json

For each prompt (ChatML-rendered chats with SmolLM2's default system prompt, and raw
completions), records llama.cpp's prompt token ids (special tokens parsed) and its greedy
continuation (argmax of the last logits row, up to --gen tokens or <|im_end|>/EOS).
Each step also stores llama.cpp's top-5 (id, logit). tests/model/test_llamacpp.c requires
eyrie's tokenization of the text to equal llama.cpp's ids exactly, and, teacher-forced along
llama.cpp's greedy path, eyrie's logits for those ids to be close and its argmax to agree
wherever llama.cpp's top-1/top-2 margin is clear (engines differ in accumulation order and
llama.cpp keeps the KV cache in f16, so near-ties may flip)."""
import argparse
import json
import os

import numpy as np

DEFAULT = os.path.join(os.environ.get("EYRIE_CACHE", os.path.expanduser("~/.cache/eyrie")),
                       "models", "smollm2-135m-instruct-q4_1.gguf")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHATS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a binary search does in two sentences.",
    "List three fruits that are red.",
    "What is 12 times 7?",
    "Translate 'good morning' into Spanish.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
]
RAW = [
    "The capital of France is",
    "Once upon a time, in a small village by the mountains,",
    "def fibonacci(n):\n",
    "1, 2, 3, 4, 5,",
]


def chatml(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def main():
    import llama_cpp
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT)
    ap.add_argument("--gen", type=int, default=32)
    a = ap.parse_args()
    llm = llama_cpp.Llama(model_path=a.model, n_threads=2, n_ctx=1024, logits_all=True,
                          verbose=False)
    stop = {llm.token_eos(), llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]}
    cases = []
    for kind, text in [("chat", chatml(u)) for u in CHATS] + [("raw", r) for r in RAW]:
        llm.reset()
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.eval(ids)
        out, top = [], []
        for _ in range(a.gen):
            row = np.asarray(llm.scores[llm.n_tokens - 1])
            order = np.argsort(-row, kind="stable")[:5]
            top.append([[int(i), round(float(row[i]), 4)] for i in order])
            t = int(order[0])
            out.append(t)
            if t in stop:
                break
            llm.eval([t])
        cases.append({"kind": kind, "text": text, "prompt_ids": ids, "greedy": out, "top5": top,
                      "decoded": llm.detokenize(out).decode("utf-8", "replace")})
    json.dump({"engine": f"llama-cpp-python {llama_cpp.__version__}",
               "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               "cases": cases}, __import__("sys").stdout, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
