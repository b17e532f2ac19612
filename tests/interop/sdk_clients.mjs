// The official SDKs (npm: openai, @anthropic-ai/sdk) as clients of a running ds4-server:
//   node tests/interop/sdk_clients.mjs http://127.0.0.1:PORT
// Prints "ok NAME" or "FAIL NAME: why" per check; exit 1 if any failed.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const base = process.argv[2];
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: base, apiKey: "unused", maxRetries: 0 });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}
function assert(cond, why) {
  if (!cond) throw new Error(why);
}

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const chat = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say something about the sea." },
];

await check("openai_models_list", async () => {
  const list = await openai.models.list();
  assert(list.data.length === 1 && typeof list.data[0].id === "string", "one model with an id");
  const one = await openai.models.retrieve(list.data[0].id);
  assert(one.id === list.data[0].id, "retrieve by id");
});

await check("openai_chat_stream_equals_whole", async () => {
  const whole = await openai.chat.completions.create({ model: "m", messages: chat, max_tokens: 12, temperature: 0 });
  const text = whole.choices[0].message.content;
  assert(typeof text === "string" && text.length > 0, "some text");
  assert(whole.usage.prompt_tokens > 0 && whole.usage.completion_tokens === 12, "usage counts");
  const stream = await openai.chat.completions.create({
    model: "m", messages: chat, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let streamed = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta && c.delta.content) streamed += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert(streamed === text, `streamed ${JSON.stringify(streamed)} != ${JSON.stringify(text)}`);
  assert(usage && usage.completion_tokens === 12, "a usage chunk");
  assert(finish === "length", `finish_reason ${finish}`);
  assert(usage.prompt_tokens_details.cached_tokens > 0, "the second request reuses the first one's prompt state");
});

await check("openai_tool_round_trip", async () => {
  // the client's side of a tool call: the assistant's call, its result, then an answer
  const messages = [
    { role: "user", content: "What is the weather in Paris?" },
    { role: "assistant", content: null, tool_calls: [
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } } ] },
    { role: "tool", tool_call_id: "call_1", content: "Sunny, 21 C" },
  ];
  const r = await openai.chat.completions.create({ model: "m", messages, tools: [weather], max_tokens: 6, temperature: 0 });
  assert(r.choices[0].message.role === "assistant", "an assistant reply");
  assert(r.usage.prompt_tokens > 150, `the tool schema and the result are in the prompt (${r.usage.prompt_tokens} tokens)`);
});

await check("openai_logprobs", async () => {
  const r = await openai.chat.completions.create({
    model: "m", messages: chat, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  assert(lp.length === 4, `one entry per token (${lp.length})`);
  for (const e of lp) {
    assert(e.logprob <= 0 && e.top_logprobs.length === 3, "a log-probability and 3 alternatives");
    assert(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6, "greedy: the token is the most likely");
  }
});

await check("openai_completions", async () => {
  const r = await openai.completions.create({ model: "m", prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
  assert(typeof r.choices[0].text === "string" && r.usage.completion_tokens === 5, "text and usage");
});

await check("openai_bad_request_is_400", async () => {
  try {
    await openai.chat.completions.create({ model: "m", messages: [{ role: "wizard", content: "x" }] });
  } catch (e) {
    assert(e.status === 400 && /role/.test(e.message), `status ${e.status}: ${e.message}`);
    return;
  }
  throw new Error("accepted an unknown role");
});

const amsgs = [{ role: "user", content: [{ type: "text", text: "Say something about the sea.", cache_control: { type: "ephemeral" } }] }];

await check("anthropic_models_list", async () => {
  const page = await anthropic.models.list();
  assert(page.data.length === 1 && page.data[0].type === "model", "one model");
  const one = await anthropic.models.retrieve(page.data[0].id);
  assert(one.id === page.data[0].id && one.type === "model", "retrieve by id");
});

await check("anthropic_stream_equals_whole", async () => {
  const whole = await anthropic.messages.create({ model: "m", max_tokens: 12, temperature: 0, system: "You are terse.",
                                                   messages: amsgs });
  const text = whole.content.filter((b) => b.type === "text").map((b) => b.text).join("");
  assert(text.length > 0 && whole.stop_reason === "max_tokens", `text and stop_reason ${whole.stop_reason}`);
  assert(whole.usage.output_tokens === 12, "usage");
  const stream = anthropic.messages.stream({ model: "m", max_tokens: 12, temperature: 0, system: "You are terse.",
                                             messages: amsgs });
  let streamed = "";
  stream.on("text", (t) => { streamed += t; });
  const final = await stream.finalMessage();
  assert(streamed === text, `streamed ${JSON.stringify(streamed)} != ${JSON.stringify(text)}`);
  assert(final.stop_reason === "max_tokens" && final.usage.output_tokens === 12, "the final message");
  assert(final.usage.cache_read_input_tokens > 0, "the prompt's state came from the cache");
});

await check("anthropic_thinking_stream", async () => {
  const stream = anthropic.messages.stream({ model: "m", max_tokens: 6, temperature: 0,
    thinking: { type: "enabled", budget_tokens: 1024 }, messages: amsgs });
  const final = await stream.finalMessage();
  assert(final.content.length >= 1 && final.content[0].type === "thinking", "the reply starts as a thinking block");
});

await check("anthropic_tool_round_trip", async () => {
  const tools = [{ name: "get_weather", description: "The weather in a city",
                   input_schema: { type: "object", properties: { city: { type: "string" } } } }];
  const messages = [
    { role: "user", content: "What is the weather in Paris?" },
    { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
    { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "Sunny" }] }] },
  ];
  const r = await anthropic.messages.create({ model: "m", max_tokens: 6, temperature: 0, tools, messages });
  assert(r.role === "assistant" && r.usage.input_tokens + r.usage.cache_read_input_tokens > 150, "the prompt holds the tools");
});

await check("anthropic_count_tokens", async () => {
  const a = await anthropic.messages.countTokens({ model: "m", messages: amsgs });
  const b = await anthropic.messages.countTokens({ model: "m", system: "You are terse.", messages: amsgs });
  assert(a.input_tokens > 5 && b.input_tokens > a.input_tokens, `${a.input_tokens} then ${b.input_tokens}`);
});

await check("anthropic_missing_max_tokens_is_400", async () => {
  try {
    await anthropic.messages.create({ model: "m", messages: amsgs });
  } catch (e) {
    assert(e.status === 400 && /max_tokens/.test(e.message), `status ${e.status}: ${e.message}`);
    return;
  }
  throw new Error("accepted a request without max_tokens");
});

process.exit(failed ? 1 : 0);
