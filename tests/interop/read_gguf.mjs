// Lists a GGUF file as read by Hugging Face's @huggingface/gguf parser, an independent
// implementation of the format, in the same shape as `ds4-gguf info` so the two can be
// compared line by line:
//   data N
//   key NAME = VALUE      (scalars and strings; arrays as [a, b, ...] in full)
//   tensor NAME TYPE [ne0, ne1, ...] OFFSET
import { gguf } from "@huggingface/gguf";

const TYPES = { 0: "f32", 1: "f16", 8: "q8_0", 10: "q2_K", 12: "q4_K", 14: "q6_K", 16: "iq2_xxs", 26: "i32", 30: "bf16", 39: "mxfp4" };

const file = process.argv[2];
const { metadata, tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
const show = (v) => (Array.isArray(v) ? "[" + v.map(show).join(", ") + "]" : typeof v === "string" ? JSON.stringify(v) : String(v));
console.log(`data ${tensorDataOffset}`);
for (const [k, v] of Object.entries(metadata)) {
  if (["version", "tensor_count", "kv_count"].includes(k)) continue;
  console.log(`key ${k} = ${show(v)}`);
}
for (const t of tensorInfos) {
  console.log(`tensor ${t.name} ${TYPES[t.dtype] ?? "type" + t.dtype} [${t.shape.join(", ")}] ${t.offset}`);
}
