#!/usr/bin/env python3
"""Golden prompts for the chat template: renders a set of conversations with Jinja2, set
up as transformers' apply_chat_template sets it up (sandboxed, trim_blocks, lstrip_blocks,
loop controls, tojson = json.dumps without ASCII escaping), plus the from_json filter the
official DeepSeek V4 template uses (llama.cpp's engine has it; transformers does not), and writes
one JSON case a line: the inputs and the rendered "text". Every branch of the template is
covered (thinking on/off, reasoning_effort max, dropped and kept reasoning, developer and
system messages, consecutive user/tool turns, tool schemas, DSML tool calls with string
and JSON arguments, empty arguments, response_format, no generation prompt).

Usage: python3 scripts/chat_golden.py TEMPLATE.jinja OUT.jsonl
"""
import json
import sys

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city — current conditions",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "threshold": {"type": "number", "default": 0.5}, "tiny": {"type": "number", "default": 1e-05},
        "big": {"type": "number", "default": 100.0}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
NOT_A_FUNCTION = {"type": "retrieval"}

CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {
    "city": "Roma", "days": 3, "metric": True, "tags": ["a", "b"], "opts": {"x": 1.5, "y": None},
    "note": "line1\nline2 \"quoted\" è"}}}
CALL_STR = {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}
CALL_EMPTY = {"type": "function", "function": {"name": "now", "arguments": {}}}

U = lambda c: {"role": "user", "content": c}
A = lambda c, r=None, calls=None: dict({"role": "assistant", "content": c},
                                       **({"reasoning_content": r} if r is not None else {}),
                                       **({"tool_calls": calls} if calls else {}))
S = lambda c: {"role": "system", "content": c}
T = lambda c: {"role": "tool", "content": c}

CASES = [
    ("user-nothink", [U("Hello, who are you?")], {}),
    ("user-think", [U("Prove that 2+2=4.")], {"thinking": True}),
    ("system-user-effort-max", [S("You are terse."), U("Sum 1..10")], {"thinking": True, "reasoning_effort": "max"}),
    ("effort-max-without-thinking", [U("hi")], {"reasoning_effort": "max"}),
    ("two-systems-developer", [S("First."), S("Second."), {"role": "developer", "content": "Dev note"}, U("Go")], {}),
    ("multiturn-think-drop", [U("Q1"), A("A1", "R1"), U("Q2"), A("A2", "R2")], {"thinking": True, "add_generation_prompt": False}),
    ("multiturn-think-after-last-user", [U("Q1"), A("A1", "R1"), U("Q2"), A("A2", "R2"), A("A3", "R3")], {"thinking": True, "add_generation_prompt": False}),
    ("multiturn-think-keep", [U("Q1"), A("A1", "R1"), U("Q2")], {"thinking": True, "drop_thinking": False}),
    ("multiturn-nothink-has-reasoning", [U("Q1"), A("A1", "R1"), U("Q2")], {}),
    ("consecutive-users", [U("part one"), U("part two"), {"role": "developer", "content": "part three"}], {}),
    ("tools-call-result", [S("Be helpful."), U("Weather in Rome?"), A(None, "Need the tool.", [CALL]),
                           T("{\"temp\": 21}"), A("It is 21 degrees.", "Done.")],
     {"thinking": True, "tools": [WEATHER, CLOCK, NOT_A_FUNCTION], "add_generation_prompt": False}),
    ("tools-nothink-two-calls", [U("Paris and time?"), A("Checking.", None, [CALL_STR, CALL_EMPTY]),
                                 T("sunny"), T("12:00")], {"tools": [WEATHER, CLOCK]}),
    ("tool-results-keep-reasoning", [U("x"), A("", "think1", [CALL_EMPTY]), T("r"), U("y")], {"thinking": True}),
    ("tools-no-system", [U("hi")], {"tools": [CLOCK]}),
    ("response-format", [S("JSON only."), U("Give me a city.")],
     {"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}}),
    ("response-format-no-system", [U("x")], {"response_format": {"type": "json_object"}}),
    ("no-generation-prompt", [U("a"), A("b")], {"add_generation_prompt": False}),
    ("empty-messages", [], {}),
    ("unicode", [U("Ciao! 你好 😀 \u00e9\t\ttab"), A("Risposta: perché no?")], {"add_generation_prompt": False}),
    ("null-content", [U(None), A(None)], {}),
]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.filters["from_json"] = json.loads
    template = env.from_string(open(sys.argv[1]).read())
    with open(sys.argv[2], "w") as f:
        for name, messages, opts in CASES:
            kw = dict(opts)
            kw.setdefault("add_generation_prompt", True)
            tools = kw.pop("tools", None)
            text = template.render(messages=messages, tools=tools, bos_token="<｜begin▁of▁sentence｜>",
                                   eos_token="<｜end▁of▁sentence｜>", **kw)
            case = {"name": name, "messages": messages, "options": dict(opts, add_generation_prompt=kw["add_generation_prompt"]),
                    "text": text}
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
