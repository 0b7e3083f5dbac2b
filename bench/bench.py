"""`just bench`: plinth against PyTorch on the same libtorch, in one session.

Measures, with the same thread count and shapes:
  * training tokens/s (forward, backward, clip, AdamW) for the tiny, small and
    base presets: plinth vs the same architecture in PyTorch eager and
    torch.compile, and plinth without each of its CPU kernels (`--composed`,
    `--mkl-gemm`, both) on the same binary;
  * batch-1 greedy generation tokens/s with and without the KV cache: plinth vs
    Hugging Face transformers' `generate` on a LlamaForCausalLM of the same shape;
  * an f32 matmul peak, the fastest of ATen's matmul, plinth's linear (oneDNN on
    the CPU) and torch's, against which model FLOP utilisation (MFU) is reported;
  * Hugging Face interop on a ~110M-parameter Llama checkpoint made locally:
    `plinth import` and loading the result against `from_pretrained` (wall time,
    peak RSS, each in a fresh process), and batch-1 greedy generation on it
    against `generate`.

Prints a Markdown table and writes bench/out/results.json. Medians, not means.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


# ---- the reference model: plinth's architecture, written in PyTorch ----------


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, kv = c["d_model"], c["n_heads"], c.get("n_kv_heads", c["n_heads"])
        self.h, self.kv, self.hd = h, kv, d // h
        self.attn_norm = nn.RMSNorm(d, eps=1e-5)
        self.q = nn.Linear(d, h * self.hd, bias=False)
        self.k = nn.Linear(d, kv * self.hd, bias=False)
        self.v = nn.Linear(d, kv * self.hd, bias=False)
        self.o = nn.Linear(h * self.hd, d, bias=False)
        self.mlp_norm = nn.RMSNorm(d, eps=1e-5)
        self.gate = nn.Linear(d, c["d_ff"], bias=False)
        self.up = nn.Linear(d, c["d_ff"], bias=False)
        self.down = nn.Linear(c["d_ff"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        y = self.attn_norm(x)
        q = self.q(y).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv != self.h)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        y = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Model(nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, c["d_model"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = nn.RMSNorm(c["d_model"], eps=1e-5)
        hd = c["d_model"] // c["n_heads"]
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(c["max_seq_len"]).float(), inv)
        e = torch.cat([f, f], -1)
        self.register_buffer("cos", e.cos(), persistent=False)
        self.register_buffer("sin", e.sin(), persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embed(ids)
        cos, sin = self.cos[:t], self.sin[:t]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x) @ self.embed.weight.t()


def python_train(c, vocab, seq_len, batch, steps, warmup, compiled):
    torch.manual_seed(0)
    model = Model(c, vocab)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    fwd = torch.compile(model) if compiled else model
    times, fwds, bwds, upds = [], [], [], []
    for i in range(warmup + steps):
        data = torch.randint(7, vocab, (batch, seq_len + 1))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = fwd(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), data[:, 1:].reshape(-1))
        loss.item()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            times.append(t3 - t0)
            fwds.append(t1 - t0)
            bwds.append(t2 - t1)
            upds.append(t3 - t2)
    step = statistics.median(times)
    return {"median_step_s": step, "tokens_per_s": batch * seq_len / step, "forward_s": statistics.median(fwds),
            "backward_s": statistics.median(bwds), "optimizer_s": statistics.median(upds)}
    return {"median_step_s": step, "tokens_per_s": batch * seq_len / step}


def hf_generate(c, vocab, prompt_len, new_tokens, repeats, use_cache):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=c["d_model"], intermediate_size=c["d_ff"], num_hidden_layers=c["n_layers"],
        num_attention_heads=c["n_heads"], num_key_value_heads=c.get("n_kv_heads", c["n_heads"]),
        max_position_embeddings=c["max_seq_len"], rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    prompt = torch.randint(7, vocab, (1, prompt_len))
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)
            times.append(time.perf_counter() - t0)
            assert out.shape[1] == prompt_len + new_tokens
    s = statistics.median(times[1:])
    return {"median_s": s, "tokens_per_s": new_tokens / s}


def make_llama_100m(d):
    """A ~110M-parameter Llama (GPT-2-small widths) with random weights, saved once."""
    if (d / "model.safetensors").exists():
        return
    sys.path.insert(0, str(ROOT / "tests" / "interop"))
    from hf_side import save_tokenizer, train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).eval().save_pretrained(d)
    tok, roles = train_tokenizer("bpe", ROOT / "tests" / "fixtures" / "corpus.txt", 400)
    save_tokenizer(tok, roles, d)


HF_LOAD = """
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from transformers import AutoModelForCausalLM
def status(key):  # VmHWM, unlike ru_maxrss, is not inherited from the parent across exec
    line = next(l for l in open("/proc/self/status") if l.startswith(key))
    return int(line.split()[1]) / 1024
base = status("VmRSS:")
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
load_s = time.perf_counter() - t0
peak = status("VmHWM:")
out = {"load_s": load_s, "peak_rss_mib": peak, "rss_before_mib": base}
n = int(sys.argv[3])
if n:
    prompt = torch.randint(7, 400, (1, 16))
    times = []
    with torch.no_grad():
        for _ in range(4):
            t0 = time.perf_counter()
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n, do_sample=False)
            times.append(time.perf_counter() - t0)
    out["tokens_per_s"] = n / statistics.median(times[1:])
    out["peak_rss_after_gen_mib"] = status("VmHWM:")
print(json.dumps(out))
"""


def interop(binary, threads, new_tokens, work, repeats=3):
    hf_dir, plinth_dir = work / "llama-100m-hf", work / "llama-100m-plinth"
    make_llama_100m(hf_dir)
    hf_py = lambda n: json.loads(subprocess.run([sys.executable, "-c", HF_LOAD, str(hf_dir), str(threads), str(n)],
                                                check=True, capture_output=True, text=True).stdout)
    imports = [plinth(binary, threads, "import", "--source", str(hf_dir), "--out", str(plinth_dir)) for _ in range(repeats)]
    hf_loads = [hf_py(0) for _ in range(repeats)]
    loads = [plinth(binary, threads, "generate", "--checkpoint", str(plinth_dir), "--new-tokens", "1", "--repeats", "1")
             for _ in range(repeats)]
    gen = plinth(binary, threads, "generate", "--checkpoint", str(plinth_dir), "--new-tokens", str(new_tokens))
    hf_gen = hf_py(new_tokens)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    return {
        "params": imports[0]["params"],
        "file_mb": (hf_dir / "model.safetensors").stat().st_size / 1e6,
        "plinth_import_s": med(imports, "seconds"), "plinth_import_peak_mib": med(imports, "peak_rss_mib"),
        "plinth_import_rss_before_mib": med(imports, "rss_before_mib"),
        "plinth_load_s": med(loads, "load_s"), "plinth_load_peak_mib": med(loads, "peak_rss_after_load_mib"),
        "plinth_load_rss_before_mib": med(loads, "rss_before_load_mib"),
        "hf_load_s": med(hf_loads, "load_s"), "hf_load_peak_mib": med(hf_loads, "peak_rss_mib"),
        "hf_rss_before_mib": med(hf_loads, "rss_before_mib"),
        "plinth_tokens_per_s": gen["tokens_per_s"], "hf_tokens_per_s": hf_gen["tokens_per_s"], "new_tokens": new_tokens,
        "plinth_gen_peak_mib": gen["peak_rss_mib"], "hf_gen_peak_mib": hf_gen["peak_rss_after_gen_mib"],
    }


def ddp(plinth_bin, work, steps=40):
    """Tokens/s of one process against two ranks (`plinth launch --nproc 2`) on the
    tiny causal pretraining config, at the same global batch (32 x 128 tokens) and
    the same two cores: 1 rank x 2 threads against 2 ranks x 1 thread."""
    base = (ROOT / "configs" / "pretrain" / "tiny-causal.toml").read_text()
    base = base.replace('model = "../models/tiny.toml"', f'model = "{ROOT / "configs" / "models" / "tiny.toml"}"')
    rows = {}
    for ranks, batch, threads in ((1, 32, 2), (2, 16, 1)):
        out = work / f"ddp-{ranks}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        cfg = (base.replace('out_dir = "runs/tiny-causal"', f'out_dir = "{out}"')
               .replace("batch_size = 32", f"batch_size = {batch}").replace("max_steps = 1500", f"max_steps = {steps}")
               .replace("eval_every = 250", "eval_every = 100000").replace("save_every = 500", "save_every = 100000")
               .replace("seed = 1234", f"seed = 1234\nthreads = {threads}"))
        path = work / f"ddp-{ranks}.toml"
        path.write_text(cfg)
        cmd = [plinth_bin, "pretrain", "--config", str(path)]
        if ranks > 1:
            cmd = [plinth_bin, "launch", "--nproc", str(ranks), "--", "plinth", "pretrain", "--config", str(path)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
        lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        timed = [l for l in lines if l["step"] > 10]
        tps = statistics.median(l["tokens_per_s"] for l in timed)
        step_s = 32 * 128 / tps
        comm = statistics.median(l.get("allreduce_s", 0.0) for l in timed)
        rows[ranks] = {"tokens_per_s": tps, "step_s": step_s, "allreduce_s": comm, "allreduce_share": comm / step_s,
                       "final_loss": lines[-1]["loss"]}
    return rows


def python_matmul(n, repeats):
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times[2:]) / 1e9


def plinth(binary, threads, *args):
    out = subprocess.run([binary, "--threads", str(threads), *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plinth", required=True, help="path to the plinth-bench binary")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--presets", default="tiny,small,base")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--sections", default="train,generate,plugins,finetune,adapters,pipeline,interop,ddp", help="comma-separated subset to run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "results.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab, batch, seq_len = 8000, 16, 128
    rows, res = [], {"threads": args.threads, "torch": torch.__version__, "train": {}, "generate": {}}

    sections = set(args.sections.split(","))
    mm = plinth(args.plinth, args.threads, "matmul")
    peaks = [mm["gflops"], mm["linear_gflops"], python_matmul(1024, 30)]
    peak = max(peaks)
    res["matmul_gflops"] = {"plinth_aten": peaks[0], "plinth_linear": peaks[1], "torch": peaks[2], "peak": peak,
                            "onednn": mm["onednn"]}
    print(f"matmul peak (f32, 1024^3): ATen matmul {peaks[0]:.1f} GFLOP/s, plinth's linear "
          f"({'oneDNN' if mm['onednn'] else 'ATen'}) {peaks[1]:.1f}, torch {peaks[2]:.1f}", file=sys.stderr)

    kernel_rows = []
    for name in args.presets.split(",") if "train" in sections else []:
        preset = ROOT / "configs" / "models" / f"{name}.toml"
        c = tomllib.loads(preset.read_text())
        warm = 3
        train_args = ["train", "--preset", str(preset), "--vocab", str(vocab), "--seq-len", str(seq_len),
                      "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(warm)]
        r = plinth(args.plinth, args.threads, *train_args)
        # The same binary without each of plinth's CPU kernels: RMSNorm, SwiGLU and
        # rotary as composed ATen ops, GEMMs through ATen's linear (MKL), and both
        # (plinth as it was before either), measured beside the references.
        composed = plinth(args.plinth, args.threads, "--composed", *train_args)
        mkl = plinth(args.plinth, args.threads, "--mkl-gemm", *train_args)
        neither = plinth(args.plinth, args.threads, "--composed", "--mkl-gemm", *train_args)
        eager = python_train(c, vocab, seq_len, batch, args.steps, warm, compiled=False)
        comp = python_train(c, vocab, seq_len, batch, args.steps, warm + 2, compiled=True)
        mfu = lambda tps: tps * r["flops_per_token"] / (peak * 1e9)
        res["train"][name] = {"plinth": r, "plinth_composed": composed, "plinth_mkl": mkl, "plinth_neither": neither,
                              "eager": eager, "compile": comp}
        kernel_rows.append((name, r["tokens_per_s"], composed["tokens_per_s"], mkl["tokens_per_s"],
                            neither["tokens_per_s"], comp["tokens_per_s"]))
        rows.append((f"train {name} ({r['params'] / 1e6:.1f}M, B={batch}, T={seq_len})",
                     r["tokens_per_s"], eager["tokens_per_s"], comp["tokens_per_s"], mfu(r["tokens_per_s"]), mfu(eager["tokens_per_s"])))
        print(f"train {name}: plinth {r['tokens_per_s']:.0f} tok/s (composed ops {composed['tokens_per_s']:.0f}, "
              f"MKL GEMMs {mkl['tokens_per_s']:.0f}, both {neither['tokens_per_s']:.0f}), "
              f"eager {eager['tokens_per_s']:.0f}, compile {comp['tokens_per_s']:.0f}", file=sys.stderr)

    gen_preset = ROOT / "configs" / "models" / "tiny.toml"
    c = tomllib.loads(gen_preset.read_text())
    for cache in (True, False) if "generate" in sections else ():
        flag = [] if cache else ["--no-cache"]
        r = plinth(args.plinth, args.threads, "generate", "--preset", str(gen_preset), "--vocab", str(vocab),
                   "--new-tokens", str(args.new_tokens), *flag)
        hf = hf_generate(c, vocab, 16, args.new_tokens, 3, cache)
        res["generate"]["cache" if cache else "no_cache"] = {"plinth": r, "hf": hf}
        rows.append((f"generate tiny, batch 1, {args.new_tokens} tokens, {'KV cache' if cache else 'no cache'}",
                     r["tokens_per_s"], hf["tokens_per_s"], None, None, None))
        print(f"generate cache={cache}: plinth {r['tokens_per_s']:.0f} tok/s, HF {hf['tokens_per_s']:.0f}", file=sys.stderr)

    plugin_rows = []
    if "plugins" in sections:
        p = plinth(args.plinth, args.threads, "plugins")
        res["plugins"] = p
        plugin_rows.append(("one record through a stage (`shout`: a batch of one, encoded in and out)", p["call_abi_ns"], p["call_direct_ns"], "the same work as a plain Rust call (`to_uppercase`)"))
        plugin_rows.append(("per record, in batches of 64 (as a pipeline sends them)", p["batch64_abi_ns_per_record"], p["call_direct_ns"], "the same work as a plain Rust call (`to_uppercase`)"))
        for t in p["tensor_handover"]:
            plugin_rows.append((f"tensor to plugin and back, {t['numel']:,} floats (zero-copy: {t['zero_copy']})", t["abi_ns"],
                                t["direct_shallow_clone_ns"], "new handle on the same tensor in the host"))
        print(f"plugins: discover + load {p['plugins_loaded']} plugin(s) in {p['discover_and_load_ms']:.2f} ms", file=sys.stderr)

    finetune_rows = []
    if "finetune" in sections:
        preset = str(ROOT / "configs" / "models" / "small.toml")
        for mode in ("lora", "full", "head-only"):
            r = plinth(args.plinth, args.threads, "finetune", "--preset", preset, "--mode", mode, "--vocab", str(vocab),
                       "--seq-len", str(seq_len), "--batch", str(batch), "--steps", str(args.steps))
            res.setdefault("finetune", {})[mode] = r
            finetune_rows.append(r)
            print(f"finetune {mode}: {r['median_step_s'] * 1e3:.0f} ms/step", file=sys.stderr)

    adapter_rows = []
    if "adapters" in sections:
        preset = str(ROOT / "configs" / "models" / "small.toml")
        for n in (1, 8):
            r = plinth(args.plinth, args.threads, "adapters", "--preset", preset, "--adapters", str(n), "--vocab", str(vocab),
                       "--seq-len", str(seq_len), "--batch", str(32), "--repeats", str(args.steps))
            res.setdefault("adapters", []).append(r)
            adapter_rows.append(r)
            print(f"adapters {n}: mixed {r['mixed_s'] * 1e3:.0f} ms, grouped {r['grouped_s'] * 1e3:.0f} ms", file=sys.stderr)

    pipeline_row = None
    if "pipeline" in sections:
        fixture = ROOT / "tests" / "fixtures" / "smiles_rdkit.tsv"
        smi = Path(args.out).parent / "bench-smiles.smi"
        smi.parent.mkdir(parents=True, exist_ok=True)
        smi.write_text("\n".join(l.split("\t")[0] for l in fixture.read_text().splitlines()[1:]) + "\n")
        pipeline_row = plinth(args.plinth, args.threads, "pipeline", "--smiles", str(smi), "--repeats", "3")
        res["pipeline"] = pipeline_row
        print(f"pipeline: engine {pipeline_row['engine_s']:.2f} s, direct {pipeline_row['direct_s']:.2f} s", file=sys.stderr)

    interop_row = None
    if "interop" in sections:
        interop_row = interop(args.plinth, args.threads, args.new_tokens, Path(args.out).parent)
        res["interop"] = interop_row
        print(f"interop: import {interop_row['plinth_import_s']:.2f} s, plinth load {interop_row['plinth_load_s']:.2f} s, "
              f"from_pretrained {interop_row['hf_load_s']:.2f} s", file=sys.stderr)

    ddp_rows = None
    if "ddp" in sections:
        plinth_bin = str(Path(args.plinth).parent / "plinth")
        ddp_rows = ddp(plinth_bin, Path(args.out).parent)
        res["ddp"] = ddp_rows
        print(f"ddp: 1 rank {ddp_rows[1]['tokens_per_s']:.0f} tok/s, 2 ranks {ddp_rows[2]['tokens_per_s']:.0f} tok/s", file=sys.stderr)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    if rows:
        print(f"| measurement | plinth tok/s | PyTorch eager / HF generate tok/s | torch.compile tok/s | plinth ÷ eager | plinth ÷ compile | MFU plinth | MFU eager |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, p, e, cmp, mp, me in rows:
        fmt = lambda v, f: "—" if v is None else f.format(v)
        print(f"| {label} | {p:.0f} | {e:.0f} | {fmt(cmp, '{:.0f}')} | {p / e:.2f}× | {fmt(None if cmp is None else p / cmp, '{:.2f}×')} | {fmt(mp, '{:.1%}')} | {fmt(me, '{:.1%}')} |")
    if kernel_rows:
        print("\n| train, tok/s | plinth | composed elementwise ops (`--composed`) | MKL GEMMs (`--mkl-gemm`) | both | torch.compile | plinth ÷ both | both ÷ compile |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, full, composed, mkl, neither, comp in kernel_rows:
            print(f"| {name} | {full:.0f} | {composed:.0f} | {mkl:.0f} | {neither:.0f} | {comp:.0f} | {full / neither:.2f}× | {neither / comp:.2f}× |")
    if plugin_rows:
        print("\n| plugin ABI | through the ABI (ns) | baseline (ns) | baseline |\n|---|---:|---:|---|")
        for label, abi, base, what in plugin_rows:
            print(f"| {label} | {abi:.0f} | {base:.0f} | {what} |")
        print(f"| discover and load all plugins ({res['plugins']['plugins_loaded']}): {res['plugins']['discover_and_load_ms']:.2f} ms | — | — | first load in a fresh process |")
    if finetune_rows:
        n = finetune_rows[0]["n_tasks"]
        print(f"\n| finetune small (binary classification, B={batch}, T={seq_len}) | trainable params | saved per task | step (ms) | peak RSS (MiB) | {n} tasks resident (MiB) |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in finetune_rows:
            print(f"| {r['mode']} | {r['trainable']:,} | {r['saved_bytes'] / 1e6:.2f} MB | {r['median_step_s'] * 1e3:.0f} | {r['peak_rss_mib']:.0f} | {r['resident_bytes_n_tasks'] / 2**20:.1f} |")
    if adapter_rows:
        print(f"\n| one batch of 32 x {seq_len} tokens, small, rows spread over N LoRA adapters | per-row mix, one forward (ms) | one forward per adapter (ms) | grouped ÷ mixed | one adapter for all rows (ms) |")
        print("|---|---:|---:|---:|---:|")
        for r in adapter_rows:
            print(f"| N = {r['adapters']} | {r['mixed_s'] * 1e3:.0f} | {r['grouped_s'] * 1e3:.0f} | {r['grouped_s'] / r['mixed_s']:.2f}× | {r['single_adapter_s'] * 1e3:.0f} |")
    if pipeline_row:
        r = pipeline_row
        print(f"\n| {r['records']:,} SMILES: read → validate → canonicalize → hazard ({r['kept']:,} kept) | seconds | records/s |")
        print("|---|---:|---:|")
        print(f"| plinth pipeline engine (`plinth_pipeline::run`: typed batches across the plugin ABI, rejects and results files included) | {r['engine_s']:.2f} | {r['engine_records_per_s']:.0f} |")
        print(f"| the same stage functions called in-process, one record at a time (no ABI, no JSON) | {r['direct_s']:.2f} | {r['direct_records_per_s']:.0f} |")
        print(f"| engine overhead | {(r['engine_s'] / r['direct_s'] - 1) * 100:+.1f}% | |")
    if interop_row:
        r = interop_row
        print(f"\n| Llama, {r['params'] / 1e6:.0f}M parameters, {r['file_mb']:.0f} MB f32 safetensors, each in a fresh process | seconds | peak RSS (MiB) | RSS before (MiB) |")
        print("|---|---:|---:|---:|")
        print(f"| `plinth import` (read, check, write a plinth checkpoint) | {r['plinth_import_s']:.2f} | {r['plinth_import_peak_mib']:.0f} | {r['plinth_import_rss_before_mib']:.0f} |")
        print(f"| plinth: load the imported checkpoint (`Checkpoint::load`) | {r['plinth_load_s']:.2f} | {r['plinth_load_peak_mib']:.0f} | {r['plinth_load_rss_before_mib']:.0f} |")
        print(f"| transformers `from_pretrained` on the same files | {r['hf_load_s']:.2f} | {r['hf_load_peak_mib']:.0f} | {r['hf_rss_before_mib']:.0f} |")
        print(f"\n| batch-1 greedy generation, {r['new_tokens']} tokens, KV cache | tokens/s | process peak RSS after loading and generating (MiB) |\n|---|---:|---:|")
        print(f"| plinth on the imported checkpoint | {r['plinth_tokens_per_s']:.1f} | {r['plinth_gen_peak_mib']:.0f} |")
        print(f"| transformers `generate` after `from_pretrained` | {r['hf_tokens_per_s']:.1f} | {r['hf_gen_peak_mib']:.0f} |")
        print(f"| plinth ÷ transformers | {r['plinth_tokens_per_s'] / r['hf_tokens_per_s']:.2f}× | |")
    if ddp_rows:
        print("\n| tiny causal pretraining, global batch 32 x 128, 40 steps (median of steps 11-40) | tokens/s | step (ms) | all-reduce per step (ms) | share of the step | loss at step 40 |")
        print("|---|---:|---:|---:|---:|---:|")
        for ranks, label in ((1, "1 process, 2 threads"), (2, "2 ranks (`plinth launch --nproc 2`), 1 thread each, Gloo on loopback")):
            r = ddp_rows[ranks]
            print(f"| {label} | {r['tokens_per_s']:.0f} | {r['step_s'] * 1e3:.0f} | {r['allreduce_s'] * 1e3:.1f} | {r['allreduce_share']:.1%} | {r['final_loss']:.4f} |")
        print(f"| 2 ranks ÷ 1 process | {ddp_rows[2]['tokens_per_s'] / ddp_rows[1]['tokens_per_s']:.2f}× | | | | |")
    print(f"\nthreads {args.threads}, torch {torch.__version__}, f32 matmul peak {peak:.1f} GFLOP/s (max of ATen's matmul "
          f"{peaks[0]:.1f}, plinth's linear {peaks[1]:.1f} and torch {peaks[2]:.1f}, 1024³)")


if __name__ == "__main__":
    main()
