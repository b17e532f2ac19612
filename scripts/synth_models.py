#!/usr/bin/env python3
"""Build the small random DeepSeek-V4 test models committed under vectors/models/.

Runs wherever PyTorch and transformers >= 5.17 are installed (a CUDA GPU is not needed
for building the models; it is used when present). For each config it:
  * instantiates DeepseekV4ForCausalLM and randomizes EVERY parameter and persistent
    buffer (HF's init leaves sinks, compressor position biases, hc bases and the hash
    tables at zero, so those paths would otherwise go untested);
  * rounds the weights onto the grid of the official release's storage formats
    (FP8 E4M3 with UE8M0 128x128 block scales, MXFP4 routed experts, BF16) so that the
    same model can also be written in the official layout losslessly;
  * saves it with save_pretrained (HF names) and, with --official, also in DeepSeek's
    original release layout (FP8/FP4 tensors + .scale, official names, official-style
    config.json) so the converter's two input layouts can be proven to agree;
  * reloads the saved model and checks that its logits equal the in-memory model's.

Usage: python3 scripts/synth_models.py --out vectors/models [--only tiny-a]
"""
import argparse
import json
import math
import os
import re

import torch
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

CSA, HCA, SWA = "compressed_sparse_attention", "heavily_compressed_attention", "sliding_attention"

# What every test model shares: the Flash architecture's fixed choices (one KV head,
# 4 hyper-connection streams, one MTP layer, YaRN on compressed layers, untied head).
# swiglu_limit is Flash's 10 scaled to these models' unit-variance pre-activations, so the
# clamp acts on a good share of values (about a third of the up projections).
COMMON = dict(
    num_key_value_heads=1, partial_rotary_factor=0.25, o_groups=2, num_experts_per_tok=2,
    n_shared_experts=1, hc_mult=4, hc_sinkhorn_iters=20, rope_theta=10000.0,
    compress_rope_theta=160000.0, swiglu_limit=1.0, routed_scaling_factor=1.5,
    num_nextn_predict_layers=1, tie_word_embeddings=False)


def yarn(factor, original_max):
    return {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original_max,
            "beta_fast": 32.0, "beta_slow": 1.0}


# tiny-a: every layer kind at short lengths (window 8, CSA rate 4, HCA rate 8, top-k 4),
# two hash layers, YaRN on compressed layers; official layout written beside it.
# tiny-b: Flash's real rates (4/128), window 128, expert dims multiples of 256, BF16,
# saved sharded so the safetensors index path is exercised. tiny-v: the real vocabulary.
CONFIGS = {
    "tiny-a": dict(
        cfg=dict(
            COMMON, vocab_size=512, hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
            head_dim=32, q_lora_rank=32, o_lora_rank=16, layer_types=[SWA, SWA, CSA, HCA, CSA, HCA],
            compress_rates={CSA: 4, HCA: 8}, sliding_window=8, index_n_heads=2, index_head_dim=16,
            index_topk=4, n_routed_experts=8, moe_intermediate_size=32,
            mlp_layer_types=["hash_moe"] * 2 + ["moe"] * 4, rope_parameters=yarn(4.0, 64),
            max_position_embeddings=4096),
        dtype=torch.float32, shard=None, official=True, seed=1234),
    "tiny-b": dict(
        cfg=dict(
            COMMON, vocab_size=1024, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            head_dim=64, q_lora_rank=64, o_lora_rank=64, layer_types=[SWA, SWA, CSA, HCA],
            compress_rates={CSA: 4, HCA: 128}, sliding_window=128, index_n_heads=4,
            index_head_dim=32, index_topk=16, n_routed_experts=4, moe_intermediate_size=256,
            mlp_layer_types=["hash_moe"] * 2 + ["moe"] * 2, rope_parameters=yarn(16.0, 1024),
            max_position_embeddings=65536),
        dtype=torch.bfloat16, shard="3MB", official=False, seed=5678),
    # tiny-v: DeepSeek's real 129,280-token vocabulary on a minimal body (hidden 16), so
    # the tokenizer, chat prompts and text generation run end to end on a real model file.
    "tiny-v": dict(
        cfg=dict(
            COMMON, vocab_size=129280, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
            head_dim=16, q_lora_rank=8, o_lora_rank=8, layer_types=[SWA, SWA, CSA, HCA],
            compress_rates={CSA: 4, HCA: 8}, sliding_window=8, index_n_heads=2, index_head_dim=8,
            index_topk=4, n_routed_experts=4, moe_intermediate_size=16,
            mlp_layer_types=["hash_moe"] + ["moe"] * 3, rope_parameters=yarn(4.0, 64),
            max_position_embeddings=4096, bos_token_id=0, eos_token_id=1),
        dtype=torch.bfloat16, shard=None, official=False, seed=4242),
    # tiny-q: for quantization checks: F32 weights, and every expert, embedding and head
    # row holds whole 256-blocks (hidden 256, experts 256), so the K-quant and IQ2 recipes
    # apply as on Flash; an indexer top-k of 128.
    "tiny-q": dict(
        cfg=dict(
            COMMON, vocab_size=512, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            head_dim=64, q_lora_rank=256, o_lora_rank=64, layer_types=[SWA, SWA, CSA, HCA],
            compress_rates={CSA: 4, HCA: 16}, sliding_window=32, index_n_heads=4,
            index_head_dim=32, index_topk=128, n_routed_experts=4, moe_intermediate_size=256,
            mlp_layer_types=["hash_moe"] + ["moe"] * 3, rope_parameters=yarn(4.0, 256),
            max_position_embeddings=4096),
        dtype=torch.float32, shard=None, official=False, seed=777),
}

RESIDUAL_WRITE = 0.1

FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def randomize(model, cfg, gen):
    """Give every parameter and persistent buffer a non-trivial random value.

    The scales make the models well conditioned, as trained models are and plain random
    ones are not: the projections that write into the residual streams (attention output,
    expert and shared-expert down) are scaled by 0.1, so each sublayer adds a small update
    instead of replacing the stream; routers get wide score gaps (6/sqrt(D)); expert
    gate/up stay at unit variance. Without this, a 0.4% weight rounding (Q8_0) flips
    routing and top-k choices and moves the logits by whole units (measured: mean KL
    0.02-0.16 for Q8_0-rounded weights); with it, about 4e-4, so quantization tests
    measure the quantizer rather than the chaos of random networks."""
    def randn(shape):
        return torch.randn(shape, generator=gen)

    persistent = {n for n, _ in model.named_buffers() if "inv_freq" not in n}
    tensors = dict(model.named_parameters())
    tensors.update({n: b for n, b in model.named_buffers() if n in persistent})
    for name, t in tensors.items():
        shape = tuple(t.shape)
        if name.endswith("tid2eid"):
            rows = [torch.randperm(cfg.n_routed_experts, generator=gen)[: cfg.num_experts_per_tok]
                    for _ in range(shape[0])]
            val = torch.stack(rows).to(t.dtype)
        elif name.endswith("embed_tokens.weight"):
            val = randn(shape)
        elif name.endswith("lm_head.weight"):
            val = randn(shape) * (3.0 / math.sqrt(shape[1]))
        elif re.search(r"norm\.weight$", name):
            val = 1.0 + 0.1 * randn(shape)
        elif name.endswith("sinks"):
            val = 0.5 * randn(shape)
        elif name.endswith("position_bias"):
            val = 0.5 * randn(shape)
        elif name.endswith("e_score_correction_bias"):
            val = 0.1 * randn(shape)
        elif re.search(r"(hc\.fn|hc_fn)$", name):
            val = randn(shape) / math.sqrt(shape[1])
        elif re.search(r"(hc\.base|hc_base)$", name):
            val = 0.5 * randn(shape)
        elif re.search(r"(hc\.scale|hc_scale)$", name):
            val = 1.0 + 0.25 * randn(shape)
        elif name.endswith("experts.gate_up_proj"):
            val = randn(shape) / math.sqrt(shape[2])
        elif name.endswith("mlp.gate.weight"):
            val = randn(shape) * (6.0 / math.sqrt(shape[1]))
        elif name.endswith("experts.down_proj"):
            val = randn(shape) * (RESIDUAL_WRITE / math.sqrt(shape[2]))
        elif re.search(r"(o_b_proj|shared_experts\.down_proj)\.weight$", name):
            val = randn(shape) * (RESIDUAL_WRITE / math.sqrt(shape[1]))
        elif t.dim() == 2:
            val = randn(shape) / math.sqrt(shape[1])
        else:
            raise SystemExit(f"synth_models: no randomization rule for {name} {shape}")
        with torch.no_grad():
            t.copy_(val.to(t.dtype))


# ---- official storage formats -------------------------------------------------------

def fp8_blocks(w):
    """FP8 E4M3 with one power-of-two (UE8M0) scale per 128x128 block."""
    rows, cols = w.shape
    br, bc = (rows + 127) // 128, (cols + 127) // 128
    scale = torch.empty(br, bc)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].float()
            amax = blk.abs().max().clamp(min=1e-30).item()
            s = 2.0 ** math.ceil(math.log2(amax / 448.0))
            scale[i, j] = s
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = (blk / s).to(torch.float8_e4m3fn)
    deq = q.float() * scale.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    e8m0 = (torch.log2(scale).round().to(torch.int32) + 127).to(torch.uint8)
    return q, e8m0, deq


def fp4_blocks(w):
    """MXFP4: E2M1 values, one UE8M0 scale per 32 inputs, two values per byte (low first)."""
    rows, cols = w.shape
    g = w.float().reshape(rows, cols // 32, 32)
    amax = g.abs().amax(-1).clamp(min=1e-30)
    exp = torch.ceil(torch.log2(amax / 6.0))
    scale = torch.pow(2.0, exp)
    x = g / scale[..., None]
    idx = (x.abs()[..., None] - FP4_VALUES).abs().argmin(-1)
    negative = (x < 0) & (idx > 0)  # E2M1 has a -0 code; keep zeros positive like the packed codes
    codes = idx | negative.to(torch.int64) << 3
    deq = (FP4_VALUES[idx] * torch.where(negative, -1.0, 1.0) * scale[..., None]).reshape(rows, cols)
    codes = codes.reshape(rows, cols).to(torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    e8m0 = (exp.to(torch.int32) + 127).to(torch.uint8)
    return packed, e8m0, deq


def official_name(hf):
    """Name of an in-memory HF tensor in DeepSeek's release layout (None: expert stack)."""
    top = {"model.embed_tokens.weight": "embed.weight", "lm_head.weight": "head.weight",
           "model.norm.weight": "norm.weight", "model.hc_head.hc_fn": "hc_head_fn",
           "model.hc_head.hc_base": "hc_head_base", "model.hc_head.hc_scale": "hc_head_scale"}
    if hf in top:
        return top[hf]
    m = re.match(r"model\.layers\.(\d+)\.(.*)$", hf)
    n, rest = m.group(1), m.group(2)
    rules = [
        (r"input_layernorm\.weight", "attn_norm.weight"),
        (r"post_attention_layernorm\.weight", "ffn_norm.weight"),
        (r"(attn|ffn)_hc\.(fn|base|scale)", r"hc_\1_\2"),
        (r"self_attn\.sinks", "attn.attn_sink"),
        (r"self_attn\.q_a_proj\.", "attn.wq_a."),
        (r"self_attn\.q_a_norm\.", "attn.q_norm."),
        (r"self_attn\.q_b_proj\.", "attn.wq_b."),
        (r"self_attn\.kv_proj\.", "attn.wkv."),
        (r"self_attn\.kv_norm\.", "attn.kv_norm."),
        (r"self_attn\.o_a_proj\.", "attn.wo_a."),
        (r"self_attn\.o_b_proj\.", "attn.wo_b."),
        (r"self_attn\.compressor\.indexer\.q_b_proj\.", "attn.indexer.wq_b."),
        (r"self_attn\.compressor\.indexer\.scorer\.weights_proj\.", "attn.indexer.weights_proj."),
        (r"self_attn\.compressor\.indexer\.kv_proj\.", "attn.indexer.compressor.wkv."),
        (r"self_attn\.compressor\.indexer\.gate_proj\.", "attn.indexer.compressor.wgate."),
        (r"self_attn\.compressor\.indexer\.kv_norm\.", "attn.indexer.compressor.norm."),
        (r"self_attn\.compressor\.indexer\.position_bias", "attn.indexer.compressor.ape"),
        (r"self_attn\.compressor\.kv_proj\.", "attn.compressor.wkv."),
        (r"self_attn\.compressor\.gate_proj\.", "attn.compressor.wgate."),
        (r"self_attn\.compressor\.kv_norm\.", "attn.compressor.norm."),
        (r"self_attn\.compressor\.position_bias", "attn.compressor.ape"),
        (r"mlp\.gate\.weight", "ffn.gate.weight"),
        (r"mlp\.gate\.e_score_correction_bias", "ffn.gate.bias"),
        (r"mlp\.gate\.tid2eid", "ffn.gate.tid2eid"),
        (r"mlp\.shared_experts\.gate_proj\.", "ffn.shared_experts.w1."),
        (r"mlp\.shared_experts\.up_proj\.", "ffn.shared_experts.w3."),
        (r"mlp\.shared_experts\.down_proj\.", "ffn.shared_experts.w2."),
        (r"mlp\.experts\.(gate_up_proj|down_proj)", None),
    ]
    for pat, rep in rules:
        mm = re.match(pat, rest)
        if mm:
            return None if rep is None else f"layers.{n}." + re.sub(pat, rep, rest, count=1)
    raise SystemExit(f"synth_models: no official name for {hf}")


FP8_OFFICIAL = re.compile(r"attn\.(wq_a|wq_b|wkv|wo_a|wo_b)\.weight$|attn\.indexer\.wq_b\.weight$"
                          r"|shared_experts\.w[123]\.weight$")


def round_to_official_grid(model):
    """Round weights so that the official storage formats hold them exactly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            off = official_name(name)
            if off is None:
                e, r, c = p.shape
                p.copy_(fp4_blocks(p.reshape(e * r, c))[2].reshape(e, r, c))
            elif FP8_OFFICIAL.search(off):
                p.copy_(fp8_blocks(p)[2])
            elif p.dim() == 2:
                p.copy_(p.bfloat16().float())


def official_config(cfg):
    ratio = {SWA: 0, CSA: cfg.compress_rates[CSA], HCA: cfg.compress_rates[HCA]}
    comp = cfg.rope_parameters["compress"]
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": 1, "head_dim": cfg.head_dim, "qk_rope_head_dim": cfg.qk_rope_head_dim,
        "q_lora_rank": cfg.q_lora_rank, "o_groups": cfg.o_groups, "o_lora_rank": cfg.o_lora_rank,
        "window_size": cfg.sliding_window,
        "compress_ratios": [ratio[t] for t in cfg.layer_types] + [0],
        "num_hash_layers": cfg.mlp_layer_types.count("hash_moe"),
        "index_n_heads": cfg.index_n_heads, "index_head_dim": cfg.index_head_dim,
        "index_topk": cfg.index_topk, "n_routed_experts": cfg.n_routed_experts,
        "n_shared_experts": 1, "num_experts_per_tok": cfg.num_experts_per_tok,
        "moe_intermediate_size": cfg.moe_intermediate_size, "scoring_func": "sqrtsoftplus",
        "routed_scaling_factor": cfg.routed_scaling_factor, "norm_topk_prob": True,
        "swiglu_limit": cfg.swiglu_limit, "hc_mult": cfg.hc_mult,
        "hc_sinkhorn_iters": cfg.hc_sinkhorn_iters, "hc_eps": cfg.hc_eps,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_parameters["main"]["rope_theta"],
        "compress_rope_theta": comp["rope_theta"],
        "rope_scaling": {"type": "yarn", "factor": comp["factor"],
                         "original_max_position_embeddings": comp["original_max_position_embeddings"],
                         "beta_fast": comp["beta_fast"], "beta_slow": comp["beta_slow"]},
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_nextn_predict_layers": cfg.num_nextn_predict_layers,
        "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": False,
        "expert_dtype": "fp4", "torch_dtype": "bfloat16",
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                "quant_method": "fp8", "scale_fmt": "ue8m0",
                                "weight_block_size": [128, 128]},
    }


def save_official(model, out):
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    cfg = model.config
    tensors = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if "inv_freq" in name:
            continue
        off = official_name(name)
        t = t.detach().cpu()
        if off is None:
            n = re.match(r"model\.layers\.(\d+)\.", name).group(1)
            I = cfg.moe_intermediate_size
            for e in range(t.shape[0]):
                if name.endswith("gate_up_proj"):
                    parts = {"w1": t[e, :I], "w3": t[e, I:]}
                else:
                    parts = {"w2": t[e]}
                for w, m in parts.items():
                    packed, scale, _ = fp4_blocks(m)
                    base = f"layers.{n}.ffn.experts.{e}.{w}"
                    tensors[base + ".weight"] = packed.view(torch.int8).contiguous()
                    tensors[base + ".scale"] = scale.view(torch.float8_e8m0fnu).contiguous()
        elif FP8_OFFICIAL.search(off):
            q, scale, _ = fp8_blocks(t)
            tensors[off] = q.contiguous()
            tensors[off[: -len("weight")] + "scale"] = scale.view(torch.float8_e8m0fnu).contiguous()
        elif off.endswith("tid2eid"):
            tensors[off] = t.to(torch.int32).contiguous()
        elif t.dim() == 2:
            tensors[off] = t.bfloat16().contiguous()
        else:
            tensors[off] = t.float().contiguous()
    # Two shards, like the real release (which has many).
    names = sorted(tensors)
    half = len(names) // 2
    index = {"metadata": {}, "weight_map": {}}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, os.path.join(out, fname), metadata={"format": "pt"})
        index["weight_map"].update({k: fname for k in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(official_config(cfg), f, indent=2)


def build(name, spec, out_root, device):
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = DeepseekV4Config(**spec["cfg"])
    torch.manual_seed(spec["seed"])
    model = DeepseekV4ForCausalLM(cfg).float().eval()
    randomize(model, cfg, gen)
    if spec["official"]:
        round_to_official_grid(model)
    # Round to the storage dtype while the model stays float32: casting the whole module
    # would also round its RoPE inv_freq buffers (not saved; the reload recomputes them).
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(spec["dtype"]).float())
    ids = torch.randint(2, cfg.vocab_size, (1, 40), generator=gen)
    with torch.no_grad():
        want = model.to(device)(ids.to(device)).logits.cpu()

    out = os.path.join(out_root, name)
    kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model = model.cpu()
    if spec["official"]:
        save_official(model, out + "-official")
    model.to(spec["dtype"]).save_pretrained(out, **kw)

    # The saved model must reproduce the in-memory one exactly.
    again = DeepseekV4ForCausalLM.from_pretrained(out, dtype=torch.float32).to(device).eval()
    with torch.no_grad():
        got = again(ids.to(device)).logits.cpu()
    diff = (want - got).abs().max().item()
    print(f"{name}: saved to {out}; reload max|dlogit| = {diff:.3g}; "
          f"logit std {want.std().item():.3f}; finite {bool(torch.isfinite(want).all())}")
    if diff != 0.0 or not torch.isfinite(want).all():
        raise SystemExit(f"synth_models: {name} does not round-trip through save_pretrained")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="vectors/models")
    ap.add_argument("--only", action="append", help="build only this config (repeatable)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, spec in CONFIGS.items():
        if not args.only or name in args.only:
            build(name, spec, args.out, device)


if __name__ == "__main__":
    main()
