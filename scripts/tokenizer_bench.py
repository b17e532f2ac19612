#!/usr/bin/env python3
"""Tokenizer throughput, ds4 against Hugging Face tokenizers, in one run on one CPU.

Encodes the "text" of every line of the corpus (vectors/tokenizer/deepseek-v3-corpus.jsonl)
single-threaded, best of 5, with HF tokenizers (line by line, and as one encode_batch
with RAYON_NUM_THREADS=1) and with `ds4 tokenize --bench` (the binary given), and writes
CSV: implementation, mode, lines, bytes, tokens, seconds, mb_per_s, cpu, date.

Usage: python3 scripts/tokenizer_bench.py TOKENIZER_JSON CORPUS DS4_BINARY OUT.csv
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def best_of(fn, runs=5):
    best = 1e30
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    tok_path, corpus, ds4, out = sys.argv[1:5]
    texts = [json.loads(l).get("text") for l in open(corpus, encoding="utf-8")]
    texts = [t for t in texts if t is not None]
    nbytes = sum(len(t.encode()) for t in texts)
    tok = Tokenizer.from_file(tok_path)
    ntok = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    rows = []
    t = best_of(lambda: [tok.encode(x, add_special_tokens=False) for x in texts])
    rows.append(("hf-tokenizers", "per-line", t))
    t = best_of(lambda: tok.encode_batch(texts, add_special_tokens=False))
    rows.append(("hf-tokenizers", "encode_batch-1-thread", t))
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as f:
        subprocess.run([ds4, "tokenize", "--tokenizer", tok_path, "--bench", corpus, "--csv", f.name], check=True)
        fields = f.read().strip().split(",")
        rows.append(("ds4", "per-line", float(fields[4])))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(out, "w") as f:
        f.write("implementation,mode,lines,bytes,tokens,seconds,mb_per_s,cpu,date\n")
        for impl, mode, secs in rows:
            f.write(f"{impl},{mode},{len(texts)},{nbytes},{ntok},{secs:.6f},{nbytes / secs / 1e6:.3f},\"{cpu_name()}\",{now}\n")
    print(open(out).read())


if __name__ == "__main__":
    main()
