#!/usr/bin/env python3
"""Generate the tokenizer / chat-template test fixtures in tests/fixtures/tokenizer/.

Reference implementation: Hugging Face `tokenizers` (pip install tokenizers gguf
numpy jinja2). Writes:

  qwen2_tiny.tokenizer.json    Qwen2-style byte-level BPE trained here on a small
                               corpus (Qwen2's split regex, NFC, ChatML specials)
  llama3_tiny.tokenizer.json   Llama-3-style (llama-bpe regex, ignore_merges,
                               <|begin_of_text|> template post-processor)
  flags_tiny.tokenizer.json    GPT-2 ByteLevel(use_regex, add_prefix_space), NFKC,
                               added tokens with lstrip/rstrip/single_word/normalized
  bytefb_tiny.tokenizer.json   hand-made vocab missing most bytes: byte_fallback,
                               unk + fuse_unk
  <name>.cases.json            expected ids for each case string, with
                               (ids) and without (ids_raw) special-token parsing,
                               and decode() output with/without skip_special_tokens
  smollm2.cases.json           the same for SmolLM2-135M-Instruct's tokenizer,
                               rebuilt from the GGUF (when the model file exists);
                               the C test rebuilds it from the GGUF too
  chat.json                    chat templates + conversations + rendered prompts
                               (jinja2 with transformers' settings)

Texts are stored hex-encoded ("hex") since they may hold NUL or odd code points.
Invalid UTF-8 inputs cannot be given to `tokenizers` (Python str); they are
listed under "invalid" and the C test only checks no crash + byte round trip.

Run:  python3 scripts/make_tokenizer_fixtures.py [--gguf PATH]
"""
import argparse
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
DEFAULT_GGUF = os.path.expanduser("~/.cache/eyrie/models/smollm2-135m-instruct-q4_1.gguf")

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# --------------------------------------------------------------------------
# corpus for the small trained vocabularies (multilingual on purpose)

CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog. It's John's book; they'll see, we've been, I'm here, you'd go.",
    "HELLO WORLD, IT'S LOUD! THEY'LL SHOUT AND WE'VE HEARD. Don't stop; can't stop; won't stop.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 123 1234567 3.14159 2,718 1e10 -17 +5 100% $9.99 #1 @home",
    "def main():\n    print('hello')\n    return 0\n\nif __name__ == '__main__':\n\tmain()\n",
    "int main(void) { for (int i = 0; i < 10; i++) { printf(\"%d\\n\", i); } return 0; }",
    "Le cœur a ses raisons que la raison ne connaît point. Ça va? Où est l'hôtel? Déjà vu, naïve café.",
    "Größe, Straße, Übung, schön, Fußball. Ich heiße Müller und wohne in München.",
    "¿Dónde está la biblioteca? ¡Qué bueno! El niño comió piña y jalapeños.",
    "Москва — столица России. Привет, как дела? Съешь же ещё этих мягких французских булок.",
    "Ελληνικά: Καλημέρα κόσμε, η γλώσσα μου έδωσαν ελληνική.",
    "日本語のテキストです。東京は日本の首都です。ひらがなとカタカナと漢字。",
    "中文文本：北京是中国的首都。我爱自然语言处理，机器学习很有趣。",
    "한국어 텍스트: 서울은 대한민국의 수도입니다. 안녕하세요!",
    "العربية: مرحبا بالعالم، كيف حالك؟ اللغة العربية جميلة جدا.",
    "עברית: שלום עולם, מה שלומך?",
    "हिन्दी: नमस्ते दुनिया, आप कैसे हैं? भारत एक विशाल देश है।",
    "ไทย: สวัสดีชาวโลก ภาษาไทยสวยงาม",
    "Emoji: 😀 😃 😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 ❤️ 🇫🇷 🏳️‍🌈 ✨🎉🔥",
    "Math: ∑ x² + y² = z², ∀ε>0 ∃δ>0, ½ ¼ ¾, α β γ δ, ∞ ≤ ≥ ≠ ≈",
    "Whitespace:  two  spaces,   three   spaces,\ttabs\t\tand\nnewlines\n\n\nand trailing   ",
    "URLs and paths: https://example.com/a/b?c=d&e=f#g, /usr/local/bin, C:\\Windows\\System32",
    "<html><body><div class=\"x\">Hello &amp; goodbye</div></body></html>",
    "JSON: {\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "Combining: e\u0301 a\u0308 o\u0302 n\u0303 (NFD) versus é ä ô ñ (NFC). Ångström Å.",
    "Contractions with curly quotes: it’s, they’re, we’ll, I’m.",
]


def corpus():
    rng = random.Random(1234)
    lines = list(CORPUS_LINES) * 20
    words = " ".join(CORPUS_LINES).split()
    for _ in range(3000):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))))
    return lines


# --------------------------------------------------------------------------
# tokenizers under test

def build_qwen2():
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tr = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=tr)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<tool_call>", "</tool_call>")])
    return tok


def build_llama3():
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tr = trainers.BpeTrainer(vocab_size=2500, min_frequency=2, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=tr)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tok


def build_flags():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=tr)
    tok.add_special_tokens([
        AddedToken("<|im_end|>", special=True, normalized=False),
        AddedToken("[MASK]", special=True, normalized=False, lstrip=True),
        AddedToken("<R>", special=True, normalized=False, rstrip=True),
        AddedToken("<LR>", special=True, normalized=False, lstrip=True, rstrip=True),
    ])
    tok.add_tokens([
        AddedToken("<|im", special=False, normalized=False),   # shorter overlap of a special
        AddedToken("word", special=False, normalized=False, single_word=True),
        AddedToken("Ⅻ", special=False, normalized=True),       # matched as NFKC "XII"
        AddedToken("ﬁx", special=False, normalized=True),      # NFKC "fix"
        AddedToken("née", special=False, normalized=False),    # raw match only (NFC form)
    ])
    return tok


def build_splits():
    """Split behaviours, String patterns, invert, empty matches, \\w/\\s, Digits."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="removed"),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[.,;!?]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="contiguous", invert=True),
        pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\S*"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"x*"), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=800, min_frequency=2, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=tr)
    tok.add_special_tokens([AddedToken("<|im_end|>", special=True, normalized=False)])
    return tok


def build_bytefb():
    # Byte-level alphabet chars only for printable ASCII letters/digits/space;
    # byte fallback tokens for a few bytes; everything else -> fused <unk>.
    b2u = bytes_to_unicode()
    vocab = {"<unk>": 0}
    for b in list(range(ord("a"), ord("z") + 1)) + list(range(ord("0"), ord("9") + 1)) + [ord(" "), ord(".")]:
        vocab[b2u[b]] = len(vocab)
    for b in (0xC3, 0xA9, 0xE2, 0x0A):
        vocab["<0x%02X>" % b] = len(vocab)
    merges = []
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (b2u[ord(" ")], "w"), ("o", "r"),
                 (b2u[ord(" ")] + "w", "or"), ("l", "d"), (b2u[ord(" ")] + "wor", "ld")]:
        for t in (a, b):
            assert t in vocab, t
        vocab.setdefault(a + b, len(vocab))
        merges.append([a, b])
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    return Tokenizer.from_str(json.dumps(spec))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_gguf(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def arr(name, conv):
        f = r.fields[name]
        return [conv(f.parts[i]) for i in f.data]

    def scalar(name):
        f = r.fields.get(name)
        return None if f is None else f.contents()

    return {
        "tokens": arr("tokenizer.ggml.tokens", lambda p: bytes(p).decode("utf-8")),
        "types": arr("tokenizer.ggml.token_type", lambda p: int(p[0])),
        "merges": arr("tokenizer.ggml.merges", lambda p: bytes(p).decode("utf-8")),
        "pre": scalar("tokenizer.ggml.pre"),
        "eos": scalar("tokenizer.ggml.eos_token_id"),
        "bos": scalar("tokenizer.ggml.bos_token_id"),
        "chat_template": scalar("tokenizer.chat_template"),
    }


def build_smollm2(g):
    """SmolLM2's published tokenizer.json: no normalizer, Digits(individual) +
    ByteLevel(add_prefix_space=False, use_regex=True), ByteLevel decoder, its 17
    control tokens as special added tokens. (llama.cpp's `smollm` pre = the same.)"""
    assert g["pre"] == "smollm", g["pre"]
    vocab = {t: i for i, t in enumerate(g["tokens"])}
    merges = [tuple(m.split(" ")) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [AddedToken(t, special=True, normalized=False) for t, ty in zip(g["tokens"], g["types"]) if ty == 3]
    tok.add_special_tokens(specials)
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(g["tokens"], g["types"]) if ty == 4]
    if user:
        tok.add_tokens(user)
    assert tok.get_vocab_size() == len(g["tokens"])
    return tok


# --------------------------------------------------------------------------
# cases

WS_CHARS = ["\u0085", "\u00a0", "\u1680", "\u180e", "\u2000", "\u2005", "\u200a", "\u200b", "\u2028", "\u2029",
            "\u202f", "\u205f", "\u3000", "\ufeff", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\r", "\t"]

FIXED = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "Hello world", "Hello, world!", " Hello world  ",
    "hello   world", "trailing spaces   ", "   leading", "tabs\tand\t\ttabs", "line1\nline2\r\nline3\rline4",
    "1234567", "1 22 333 4444 55555", "3.14159265", "x=12345678901234567890", "٣٤٥ ½ ² ⅔ Ⅻ 𝟙𝟚",
    "it's", "It'S", "they'LL", "we'VE 'd 'm 're", "'s's's", "don't can't won't", "it’s curly",
    "The quick brown fox jumps over the lazy dog.", "HELLO WORLD", "CamelCaseWordsHere", "snake_case_here",
    "日本語のテキスト", "東京は日本の首都です。", "中文文本测试", "한국어 텍스트", "Привет, мир!",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Ελληνικά",
    "😀", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "❤️", "🇫🇷🇩🇪", "🏳️‍🌈", "a😀b", "😀😀😀 😀", "✨🎉🔥",
    "e\u0301", "cafe\u0301 vs caf\u00e9", "A\u030a vs \u00c5 vs \u212b", "n\u0303o\u0302", "\u0301 leading mark",
    "ﬁne ﬂy", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "Ⅻ o'clock", "X\u0336",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n",
    "<|im_start |>", "< |im_end|>", "<|im_end|", "<|im", "<|im<|im_end|>", "text<|im_end|>text",
    "<|im_end|><|im_end|>", "<|begin_of_text|>Hello", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\n",
    "<tool_call>{\"a\": 1}</tool_call>", "<repo_name>x<file_sep>", "<jupyter_code>print(1)",
    "[MASK]", "a [MASK] b", "a   [MASK]   b", "<R>   x", "a  <LR>  b", "word", "a word b", "words", "sword",
    "word.", "_word", "Ⅻ XII", "ﬁx fix", "née nee\u0301",
    "def f(x):\n    return x * 2\n", "    indented\n        more\n", "if (a && b) { c(); }",
    "https://example.com/path?q=1&r=2", "user@example.com", "C:\\path\\to\\file.txt",
    "!!!???...,,,;;;", "----====____", "(((nested)))", "\"quoted\" 'single'", "`backtick`", "~!@#$%^&*()_+",
    "a" * 300, " " * 100, "\n" * 50, "ab" * 200, "1" * 100, "😀" * 40, "é" * 50,
    "hello\x00world", "\x01\x02\x03", "\x7f\x80", "x\u00adx", "\ufffd", "\U0010ffff", "\ue000 private",
    "mixed 日本 english 中文 и русский 123 😀!", "ⓐⓑⓒ", "𝔥𝔢𝔩𝔩𝔬", "Ⓗello",
] + [f"a{c}b" for c in WS_CHARS] + [f"x {c} y" for c in WS_CHARS] + [f"{c}{c}start" for c in WS_CHARS] + \
    [f"end{c}{c}" for c in WS_CHARS] + [f"1{c}2" for c in WS_CHARS]

ATOMS = [
    "a", "b", "Z", "hello", "World", "THE", " ", "  ", "\t", "\n", "\r\n", "\n\n", "0", "7", "42", "1234567",
    ".", ",", "!", "?", "'", "'s", "'LL", "'ve", "’", "-", "_", "(", ")", "<", ">", "|", "/", "\\", "\"", "#",
    "é", "e\u0301", "ß", "Å", "A\u030a", "ﬁ", "Ⅻ", "½", "²", "٣", "日本", "語", "中", "한", "Я", "ж", "ع", "ש",
    "न", "ก", "ά", "😀", "👍🏽", "👩‍💻", "❤️", "🇫🇷", "\u200d", "\u200b", "\u00a0", "\u3000", "\u2028", "\u0085",
    "\u180e", "\x0b", "\x1f", "\ufeff", "\u0301", "\u0308",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<|", "|>", "im_end",
    "<tool_call>", "[MASK]", "<R>", "<LR>", "word", "XII", "fix", "née",
]


def random_cases(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 25))))
    return out


INVALID = [
    b"\xff", b"abc\xffdef", b"\xc3", b"caf\xc3", b"\xc3\x28", b"\xe2\x82", b"\xe2\x82\x28", b"\xf0\x9f\x98",
    b"\xf0\x9f\x98 x", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80\x80\x80", b"hi \xfe\xfe there",
    b"<|im_end|>\xff<|im_start|>", b"12\xff34", b"\xe6\x97\xa5\xe6\x9c", b" \xff ", b"\xf4\x90\x80\x80",
]


def case_entry(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    tok.encode_special_tokens = True
    try:
        ids_raw = tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False
    dec = tok.decode(ids, skip_special_tokens=False)
    dec_skip = tok.decode(ids, skip_special_tokens=True)
    # "text" unless it holds NUL (cJSON strings are NUL-terminated), else "hex";
    # "dec"/"dec_skip" only when they differ from the input / from "dec"
    e = {"text": text} if "\0" not in text else {"hex": text.encode("utf-8").hex()}
    e["ids"] = ids
    if ids_raw != ids:
        e["ids_raw"] = ids_raw
    if dec != text:
        e["dec_hex"] = dec.encode("utf-8").hex()
    if dec_skip != dec:
        e["dec_skip_hex"] = dec_skip.encode("utf-8").hex()
    return e


def write_cases(name, tok, tokenizer_file, extra_texts=(), n_random=300, seed=0):
    texts = FIXED + list(extra_texts) + random_cases(n_random, seed)
    long_text = " ".join(CORPUS_LINES) * 3
    texts.append(long_text)
    cases = [case_entry(tok, t) for t in texts]
    # token-by-token bytes are checked in C via decode of single ids
    sample_ids = sorted(set(list(range(0, min(400, tok.get_vocab_size())))
                            + list(range(max(0, tok.get_vocab_size() - 60), tok.get_vocab_size()))))
    singles = []
    for i in sample_ids:
        if tok.id_to_token(i) is None:
            continue
        found = tok.token_to_id(tok.id_to_token(i))
        singles.append([i, tok.id_to_token(i), tok.decode([i], skip_special_tokens=False).encode("utf-8").hex(),
                        -1 if found is None else found])
    doc = {"tokenizer": tokenizer_file, "n_vocab": tok.get_vocab_size(), "cases": cases, "singles": singles,
           "invalid": [b.hex() for b in INVALID]}
    path = os.path.join(OUT, name + ".cases.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\"tokenizer\": %s, \"n_vocab\": %d,\n" % (json.dumps(tokenizer_file), doc["n_vocab"]))
        f.write("\"invalid\": %s,\n" % json.dumps(doc["invalid"]))
        f.write("\"singles\": [\n%s],\n" % ",\n".join(json.dumps(x, ensure_ascii=False) for x in singles))
        f.write("\"cases\": [\n%s]}\n" % ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
    print(f"wrote {path}: {len(cases)} cases", file=sys.stderr)


def save_tokenizer(tok, name):
    path = os.path.join(OUT, name + ".tokenizer.json")
    tok.save(path, pretty=False)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)
    return name + ".tokenizer.json"


# --------------------------------------------------------------------------
# chat templates

QWEN25_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\" }}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n")

QWEN3_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n{%- else %}\n    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and not(message.content.startswith('<tool_response>') "
    "and message.content.endswith('</tool_response>')) %}\n        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {%- set content = message.content %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n        {%- else %}\n"
    "            {%- if '</think>' in message.content %}\n"
    "                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n        {%- endif %}\n        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + "
    "'\\n</think>\\n\\n' + content.lstrip('\\n') }}\n            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n            {%- endif %}\n"
    "        {%- else %}\n            {{- '<|im_start|>' + message.role + '\\n' + content }}\n        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n{%- endif %}")

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

# Llama-3.1/3.3's template (3.2's with its strftime_now date replaced by 3.1's fixed default)
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

SMOLLM2_TEMPLATE_FALLBACK = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CONVERSATIONS = [
    [],
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": "  padded system  \n"}, {"role": "user", "content": "\n  padded user \t"},
     {"role": "assistant", "content": " padded reply "}, {"role": "user", "content": "ok"}],
    [{"role": "user", "content": "日本語で答えて 😀"}, {"role": "assistant", "content": "はい！"},
     {"role": "user", "content": "<|im_end|> inside text"}],
    [{"role": "user", "content": "think"},
     {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer."},
     {"role": "user", "content": "again"}],
    [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "<think>r1</think>a1"}],
    [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "plain answer"}],
    [{"role": "user", "content": "call a tool"}, {"role": "assistant", "content": "calling"},
     {"role": "tool", "content": "{\"r\": 1}"}, {"role": "tool", "content": "{\"r\": 2}"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "u"}, {"role": "system", "content": "S2"},
     {"role": "user", "content": "u2"}],
    [{"role": "user", "content": ""}],
]


_HF_TOK = None


def render(template, messages, bos_token):
    """transformers' apply_chat_template when transformers is installed (no
    torch needed), else jinja2 set up as transformers does."""
    global _HF_TOK
    try:
        from transformers import PreTrainedTokenizerFast
        if _HF_TOK is None:
            _HF_TOK = PreTrainedTokenizerFast(tokenizer_object=build_bytefb())
        _HF_TOK.bos_token = bos_token or None
        if not messages:
            return None  # transformers refuses empty conversations
        return _HF_TOK.apply_chat_template(messages, chat_template=template, tokenize=False,
                                           add_generation_prompt=True)
    except ImportError:
        pass
    if not messages:
        return None
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos_token)


def write_chat(smol_template):
    templates = {
        "smollm2": (smol_template or SMOLLM2_TEMPLATE_FALLBACK, "<|im_start|>"),
        "qwen25": (QWEN25_TEMPLATE, ""),
        "qwen3": (QWEN3_TEMPLATE, ""),
        "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>"),
        "llama31": (LLAMA31_TEMPLATE, "<|begin_of_text|>"),
    }
    out = {"templates": {}, "conversations": CONVERSATIONS, "expected": {}}
    for name, (tpl, bos) in templates.items():
        out["templates"][name] = tpl
        exp = []
        for conv in CONVERSATIONS:
            # the tool/think conversations only make sense for Qwen; others render them literally
            try:
                exp.append(render(tpl, conv, bos))
            except Exception:  # e.g. messages[0] on an empty list: HF raises too
                exp.append(None)
        out["expected"][name] = exp
    path = os.path.join(OUT, "chat.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    tok = build_qwen2()
    write_cases("qwen2_tiny", tok, save_tokenizer(tok, "qwen2_tiny"), seed=1)
    tok = build_llama3()
    write_cases("llama3_tiny", tok, save_tokenizer(tok, "llama3_tiny"), seed=2)
    tok = build_flags()
    write_cases("flags_tiny", tok, save_tokenizer(tok, "flags_tiny"), seed=3)
    tok = build_splits()
    write_cases("splits_tiny", tok, save_tokenizer(tok, "splits_tiny"), n_random=200, seed=6)
    tok = build_bytefb()
    write_cases("bytefb_tiny", tok, save_tokenizer(tok, "bytefb_tiny"), n_random=100, seed=4)

    smol_template = None
    if os.path.exists(args.gguf):
        g = read_gguf(args.gguf)
        smol_template = g["chat_template"]
        tok = build_smollm2(g)
        write_cases("smollm2", tok, "gguf:" + os.path.basename(args.gguf), n_random=400, seed=5)
    else:
        print(f"note: {args.gguf} not found; smollm2.cases.json not regenerated", file=sys.stderr)
    write_chat(smol_template)


if __name__ == "__main__":
    main()
