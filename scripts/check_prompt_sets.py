#!/usr/bin/env python3
"""Validate the drafter-training prompt sets under samples/prompts/.

Checks train.jsonl and eval.jsonl:
  - every line is one JSON object with exactly the fields id, category, messages;
  - ids match train-NNNN / eval-NNN and are unique across both files;
  - messages is a non-empty list of {"role", "content"} objects whose roles
    alternate user/assistant, starting and ending with a user turn, with
    non-empty string content;
  - category counts match the expected split (60 each in train, 12 each in eval);
  - no exact (normalized) duplicates and no near-duplicates, within a set or
    across the sets. Near-duplicate: Jaccard similarity of lowercase word sets
    greater than 0.6, compared between whole conversations and between
    individual user messages.

Exits 0 when every check passes, 1 otherwise (problems are printed).
Usage: python3 scripts/check_prompt_sets.py [PROMPT_DIR]
"""
import itertools
import json
import re
import sys
from pathlib import Path

CATEGORIES = ["chat", "explanation", "code", "math", "lists", "rewriting", "creative", "qa"]
SETS = {
    # name: (file, id pattern, count per category)
    "train": ("train.jsonl", re.compile(r"^train-\d{4}$"), 60),
    "eval": ("eval.jsonl", re.compile(r"^eval-\d{3}$"), 12),
}
JACCARD_MAX = 0.6
WORD = re.compile(r"[a-z0-9]+")

problems = []


def problem(msg):
    problems.append(msg)


def words(text):
    return frozenset(WORD.findall(text.lower()))


def normalize(text):
    return " ".join(WORD.findall(text.lower()))


def jaccard(a, b):
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def load(name, path, id_re):
    records = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as e:
        problem(f"{path}: cannot read: {e}")
        return records, 0
    if lines and lines[-1] == "":
        lines.pop()
    else:
        problem(f"{path}: missing final newline")
    for n, line in enumerate(lines, 1):
        where = f"{path.name}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            problem(f"{where}: invalid JSON: {e}")
            continue
        if not isinstance(rec, dict):
            problem(f"{where}: not a JSON object")
            continue
        if set(rec) != {"id", "category", "messages"}:
            problem(f"{where}: fields are {sorted(rec)}, expected id, category, messages")
            continue
        rid, cat, msgs = rec["id"], rec["category"], rec["messages"]
        if not isinstance(rid, str) or not id_re.match(rid):
            problem(f"{where}: bad id {rid!r}")
        if cat not in CATEGORIES:
            problem(f"{where}: unknown category {cat!r}")
        if not isinstance(msgs, list) or not msgs:
            problem(f"{where}: messages must be a non-empty list")
            continue
        ok = True
        for i, m in enumerate(msgs):
            want = "user" if i % 2 == 0 else "assistant"
            if not isinstance(m, dict) or set(m) != {"role", "content"}:
                problem(f"{where}: message {i} must have exactly role and content")
                ok = False
                continue
            if m["role"] != want:
                problem(f"{where}: message {i} role {m['role']!r}, expected {want!r}")
                ok = False
            if not isinstance(m["content"], str) or not m["content"].strip():
                problem(f"{where}: message {i} content empty or not a string")
                ok = False
        if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") != "user":
            problem(f"{where}: last message must be from the user")
            ok = False
        if ok:
            rec["_where"] = f"{name}:{rid}"
            rec["_full"] = "\n".join(m["content"] for m in msgs)
            rec["_users"] = [m["content"] for m in msgs if m["role"] == "user"]
            records.append(rec)
        else:
            records.append(None)
    return records, len(lines)


def texts(rec):
    """Texts compared for duplicates: the whole conversation and each user turn."""
    out = [rec["_full"]]
    if len(rec["_users"]) > 1:
        out += rec["_users"]
    return [(normalize(t), words(t)) for t in out]


def near_dups(pairs):
    found = 0
    for a, b in pairs:
        best = 0.0
        exact = False
        for (na, wa), (nb, wb) in itertools.product(texts(a), texts(b)):
            if na == nb:
                exact = True
            best = max(best, jaccard(wa, wb))
        if exact:
            problem(f"duplicate: {a['_where']} and {b['_where']} share identical text")
            found += 1
        elif best > JACCARD_MAX:
            problem(f"near-duplicate (Jaccard {best:.2f}): {a['_where']} and {b['_where']}")
            found += 1
    return found


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "samples" / "prompts"
    loaded = {}
    all_ids = {}
    for name, (fname, id_re, per_cat) in SETS.items():
        path = root / fname
        recs, nlines = load(name, path, id_re)
        good = [r for r in recs if r is not None]
        loaded[name] = good
        for r in good:
            if r["id"] in all_ids:
                problem(f"duplicate id {r['id']} ({all_ids[r['id']]} and {r['_where']})")
            all_ids[r["id"]] = r["_where"]
        counts = {c: 0 for c in CATEGORIES}
        multi = 0
        for r in good:
            if r["category"] in counts:
                counts[r["category"]] += 1
            multi += len(r["messages"]) > 1
        for c in CATEGORIES:
            if counts[c] != per_cat:
                problem(f"{fname}: category {c} has {counts[c]} prompts, expected {per_cat}")
        expect_total = per_cat * len(CATEGORIES)
        if nlines != expect_total:
            problem(f"{fname}: {nlines} lines, expected {expect_total}")
        print(f"{fname}: {nlines} lines, {multi} multi-turn, "
              + ", ".join(f"{c}={counts[c]}" for c in CATEGORIES))

    train, ev = loaded["train"], loaded["eval"]
    within = near_dups(itertools.combinations(train, 2)) + near_dups(itertools.combinations(ev, 2))
    cross = near_dups(itertools.product(ev, train))
    print(f"near-duplicates (Jaccard > {JACCARD_MAX}): {within} within sets, {cross} across sets")

    if problems:
        for p in problems:
            print("FAIL:", p)
        print(f"{len(problems)} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
