#!/usr/bin/env python
"""Runner-level GPU benchmarks on random weights of the real dimensions (no Ray, no model hub).

Each benchmark builds a model from its shipped architecture config (`mmserve.model_configs`),
saves it as an ordinary model folder, loads it through mmserve's own runner exactly as real
weights load, and times the runner's public calls. Tokenizers, scheduler, VAD/punctuation and
the other small pieces come from mmserve's tiny builders (`mmserve.tiny`). `--tiny` swaps the real
configs for the tiny builders' own and runs one short pass on CPU: the dry run of
bench/gpu/check.sh. Outputs are noise; only times and memory mean anything.

    python -m bench gpu-bench plan
    python -m bench gpu-bench probe
    python -m bench gpu-bench run sd3 [--tiny] [--work DIR] [--out DIR]
    python -m bench gpu-bench summary DIR [--json FILE]

`run` writes `<out>/gpu-<name>.json` (status "started" first, so a benchmark killed at its time
box still leaves a record) with the machine, versions, command and figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# name -> (time box in seconds on an H100/H200, what it measures); order = priority in check.sh
PLAN = {
    "sd3": (120, "SD3 Medium + T5, fp16, 1024x1024, 28 steps: s/image and peak memory, batch 1 and the per-call batch"),
    "llm": (90, "Qwen2.5-7B-sized LLM, transformers runner, production dtype: tokens/s for one stream"),
    "asr": (50, "SeACo-Paraformer-large + VAD + punctuation on 10 s of audio: real-time factor"),
    "tts": (50, "ChatTTS at its default (real) dims, one sentence, capped codes: real-time factor"),
    "llm-4bit": (50, "the LLM with bitsandbytes nf4: tokens/s and memory"),
    "sd3-4bit": (70, "SD3 with bitsandbytes nf4 transformer + T5: s/image (batch 1) and memory"),
    "llm-8bit": (60, "the LLM with bitsandbytes int8: tokens/s and memory"),
    "sd3-8bit": (80, "SD3 with bitsandbytes int8 transformer + T5: s/image (batch 1) and memory"),
}
PROMPT = "a watercolor painting of mountains and a lake at dawn, highly detailed"
SENTENCE = "今天天气很好，我们一起去公园散步吧。"
CHAT = "Please describe, in about two hundred words, how a speech recognition model turns audio into text."


# ---------------------------------------------------------------------------------------- records
def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        with contextlib.suppress(Exception):
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    info["versions"] = versions()
    return info


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("transformers", "diffusers", "funasr", "chattts", "bitsandbytes", "accelerate", "torchaudio"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def write(record: dict, out_dirs: list[Path]) -> None:
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / f"gpu-{record['name']}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")


class Clock:
    """Wall time of a block, synchronised with the GPU; peak memory since the block started."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.s = time.perf_counter() - self.t0
        self.peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None


# ------------------------------------------------------------------------------------ model build
def config_dir(key: str, tiny_dir: Path, tiny: bool) -> Path:
    """Architecture configs: the tiny builder's folder for --tiny, the shipped real ones otherwise."""
    if tiny:
        return tiny_dir
    from mmserve import model_configs

    return model_configs.path(key)


def count_params(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def folder_gib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**30, 2)


def model_dir(ctx: dict, name: str) -> Path:
    return ctx["work"] / (f"{name}-tiny" if ctx["tiny"] else name)


def build_once(folder: Path, build) -> dict:
    """Run build(folder) unless an earlier benchmark left a complete folder (marker file)."""
    marker = folder / ".gpu-bench-built"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    facts = build(folder)
    marker.write_text(json.dumps(facts))
    import gc

    import torch

    gc.collect()  # the built modules are gone: give their memory back before the runner loads
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return facts


def sd3_models(src: Path) -> dict:
    """SD3's five models from their configs, random weights, on the current default device."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    return {
        "transformer": SD3Transformer2DModel.from_config(SD3Transformer2DModel.load_config(src / "transformer")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(src / "vae")),
        "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(src / "text_encoder")),
        "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(src / "text_encoder_2")),
        "text_encoder_3": T5EncoderModel(T5Config.from_pretrained(src / "text_encoder_3")),
    }


def llm_model(src: Path, dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=dtype)


def build_sd3(folder: Path, tiny: bool, device: str, dtype) -> dict:
    """SD3 pipeline folder: tokenizers + scheduler from mmserve.tiny.sd3, the five models from config."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    from mmserve.tiny import sd3 as tiny_sd3

    tiny_dir = tiny_sd3.build(folder.parent / f"{folder.name}-tokenizers")
    src = config_dir("sd3-medium", tiny_dir, tiny)
    small = StableDiffusion3Pipeline.from_pretrained(tiny_dir)
    t0 = time.perf_counter()
    with torch.device(device), torch.no_grad():  # random init of billions of parameters on CPU is too slow
        big = {k: m.to(dtype) for k, m in sd3_models(src).items()}
    pipe = StableDiffusion3Pipeline(**{**small.components, **big})
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe.save_pretrained(folder)
    facts = {"config": str(src), "params": count_params(big.values()), "build_s": round(build_s, 2),
             "save_s": round(time.perf_counter() - t0, 2), "folder_gib": folder_gib(folder)}
    del pipe, big
    shutil.rmtree(tiny_dir)
    return facts


def build_llm(folder: Path, tiny: bool, device: str, dtype) -> dict:
    """Chat model folder: ChatML tokenizer from mmserve.tiny.qwen, the model from config."""
    import torch

    from mmserve.tiny import qwen as tiny_qwen

    tiny_dir = tiny_qwen.build(folder.parent / f"{folder.name}-tokenizers")
    src = config_dir("qwen2.5-7b-instruct", tiny_dir, tiny)
    t0 = time.perf_counter()
    with torch.device(device), torch.no_grad():  # random init of billions of parameters on CPU is too slow
        model = llm_model(src, dtype)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save_pretrained(folder)
    for f in tiny_dir.iterdir():  # tokenizer files (and the tiny generation config) stay with the model
        if "token" in f.name or f.name == "chat_template.jinja":
            shutil.copy(f, folder / f.name)
    facts = {"config": str(src), "params": count_params([model]), "build_s": round(build_s, 2),
             "save_s": round(time.perf_counter() - t0, 2), "folder_gib": folder_gib(folder)}
    del model
    shutil.rmtree(tiny_dir)
    return facts


def build_asr(folder: Path, tiny: bool) -> dict:
    """FunASR folders from mmserve.tiny.funasr; at real size the recognizer is SeACo-Paraformer-large
    from its shipped config.yaml (VAD and punctuation stay tiny)."""
    from mmserve.tiny import funasr as tiny_funasr

    t0 = time.perf_counter()
    tiny_funasr.build(folder, size="tiny" if tiny else "large")
    facts = {"config": "mmserve.tiny.funasr (tiny)" if tiny else "mmserve/model_configs/paraformer-large/config.yaml",
             "vad_punc": "tiny (mmserve.tiny.funasr)", "build_s": round(time.perf_counter() - t0, 2)}
    return facts


def build_tts(folder: Path, tiny: bool) -> dict:
    """ChatTTS folder from mmserve.tiny.chattts; for real size its Config is ChatTTS's default one
    (the real architecture), checked against the shipped GPT config."""
    from dataclasses import asdict

    from ChatTTS.config import Config

    from mmserve.tiny import chattts as tiny_chattts

    t0 = time.perf_counter()
    facts = {"config": "mmserve.tiny.chattts (tiny)"}
    if tiny:
        tiny_chattts.build(folder)
    else:
        from mmserve import model_configs

        shipped = json.loads((model_configs.path("chattts") / "asset" / "gpt" / "config.json").read_text())
        gpt = asdict(Config().gpt)
        facts["gpt_config_mismatch"] = {k: (v, gpt.get(k)) for k, v in shipped.items()
                                        if k in gpt and gpt[k] != v} or None
        tiny_chattts.build(folder, size="real")
        facts["config"] = "ChatTTS.config.Config() defaults (the published model's sizes)"
    facts["build_s"] = round(time.perf_counter() - t0, 2)
    return facts


# ------------------------------------------------------------------------------------- benchmarks
def production(name: str) -> dict:
    """The entry of model `name` in serve_config.yaml's `models:` (the production config), as YAML."""
    import yaml

    args = yaml.safe_load((REPO / "serve_config.yaml").read_text())["applications"][0]["args"]
    return next((model for model in args["models"] if model["name"] == name), {"runner": {}})


def bench_sd3(ctx: dict, quantization: str = "none") -> dict:
    from mmserve.protocol.image import ImageRequest
    from mmserve.runners.sd3 import ImageArgs, ImageRunner

    tiny, device = ctx["tiny"], ctx["device"]
    prod = production("sd3-medium")
    dtype_name = "float32" if tiny else prod["runner"].get("dtype", "float16")
    folder = model_dir(ctx, "sd3")
    facts = build_once(folder, lambda d: build_sd3(d, tiny, device, _dtype(dtype_name, device)))
    size, steps = (128, 2) if tiny else (1024, prod["runner"].get("default_steps", 28))
    per_call = prod.get("batch", {}).get("max_batch_size", 2)
    with Clock(device) as load:
        runner = ImageRunner(ImageArgs(model=str(folder), device=device, dtype=dtype_name,
                                       quantization=quantization, default_steps=steps))
    out = {"build": facts, "load_s": round(load.s, 2), "load_peak_gib": load.peak_gib, "dtype": dtype_name,
           "quantization": quantization, "width": size, "height": size, "steps": steps}
    runner.warmup()
    batches = [1] if quantization != "none" else [1, per_call]
    for n in batches:
        reqs = [ImageRequest(prompt=PROMPT, width=size, height=size, num_inference_steps=steps, seed=i)
                for i in range(n)]
        times = []
        for _ in range(1 if tiny or n > 1 or quantization != "none" else 2):
            with Clock(device) as c:
                images = runner.generate(reqs)
            times.append(c.s)
        assert [im.size for ims in images for im in ims] == [(size, size)] * n
        out[f"batch_{n}"] = {"s_per_call": round(min(times), 3), "s_per_image": round(min(times) / n, 3),
                             "s_per_step": round(min(times) / steps, 4), "peak_gib": c.peak_gib, "runs": len(times)}
    out["per_call_batch_configured"] = per_call
    return out


def bench_llm(ctx: dict, quantization: str = "none") -> dict:
    from mmserve.protocol.llm import ChatMessage, GenerationParams
    from mmserve.runners.llm import LlmArgs, LlmRunner

    tiny, device = ctx["tiny"], ctx["device"]
    dtype_name = "float32" if tiny else production("qwen2.5-7b-instruct")["runner"].get("dtype", "bfloat16")
    folder = model_dir(ctx, "llm")
    facts = build_once(folder, lambda d: build_llm(d, tiny, device, _dtype(dtype_name, device)))
    new_tokens = 16 if tiny else {"none": 256, "4bit": 128, "8bit": 64}[quantization]
    with Clock(device) as load:
        runner = LlmRunner(LlmArgs(model=str(folder), device=device, dtype=dtype_name,
                                   quantization=quantization, max_new_tokens=new_tokens))
    runner.warmup()
    messages = [ChatMessage(role="user", content=CHAT)]
    with Clock(device) as first:
        runner.chat(messages, GenerationParams(max_new_tokens=1, temperature=0))
    with Clock(device) as c:
        result = runner.chat(messages, GenerationParams(max_new_tokens=new_tokens, temperature=0))
    decode_s = max(c.s - first.s, 1e-9)
    return {"build": facts, "load_s": round(load.s, 2), "load_peak_gib": load.peak_gib, "dtype": dtype_name,
            "quantization": quantization, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "time_to_first_token_s": round(first.s, 4),
            "total_s": round(c.s, 3), "tokens_per_s": round(result.completion_tokens / c.s, 2),
            "decode_tokens_per_s": round(max(result.completion_tokens - 1, 0) / decode_s, 2), "peak_gib": c.peak_gib}


def bench_asr(ctx: dict) -> dict:
    import numpy as np

    from mmserve.media import decode_audio
    from mmserve.runners.paraformer import AsrArgs, AsrRunner

    tiny, device = ctx["tiny"], ctx["device"]
    folder = model_dir(ctx, "asr")
    facts = build_once(folder, lambda d: build_asr(d, tiny))
    with Clock(device) as load:
        runner = AsrRunner(AsrArgs(model=str(folder / "paraformer"), vad_model=str(folder / "vad"),
                                   punc_model=str(folder / "punc"), device=device, ncpu=min(os.cpu_count() or 1, 8)))
    speech = decode_audio((REPO / "tests" / "data" / "speech_zh.wav").read_bytes()).samples
    seconds = 10.0
    audio = np.resize(speech, int(seconds * 16000)).astype(np.float32)  # the clip repeated to 10 s
    runner.warmup()
    times = []
    for _ in range(3 if device.startswith("cuda") else 1):
        with Clock(device) as c:
            transcript = runner.transcribe(audio)
        times.append(c.s)
    return {"build": facts, "load_s": round(load.s, 2), "audio_s": seconds, "runs": len(times),
            "s_median": round(statistics.median(times), 4), "rtf": round(statistics.median(times) / seconds, 5),
            "x_real_time": round(seconds / statistics.median(times), 1), "peak_gib": c.peak_gib,
            "text_chars": len(transcript.text)}


def bench_tts(ctx: dict) -> dict:
    from mmserve.protocol.tts import SpeechRequest
    from mmserve.runners.chattts import TtsArgs, TtsRunner

    tiny, device = ctx["tiny"], ctx["device"]
    folder = model_dir(ctx, "tts")
    facts = build_once(folder, lambda d: build_tts(d, tiny))
    # codes, ~21 ms of audio each: random weights rarely stop by themselves
    cap = 384 if device.startswith("cuda") else 16
    with Clock(device) as load:
        runner = TtsRunner(TtsArgs(model=str(folder), device=device, max_new_token=cap))
    runner.warmup()
    with Clock(device) as c:
        wav = runner.synthesize([SpeechRequest(text=SENTENCE, seed=0)])[0]
    audio_s = len(wav) / runner.sample_rate
    with Clock(device) as first:
        chunks = runner.stream(SpeechRequest(text=SENTENCE, seed=0))
        next(chunks)
    chunks.close()
    return {"build": facts, "load_s": round(load.s, 2), "max_new_token": cap, "audio_s": round(audio_s, 3),
            "s": round(c.s, 3), "rtf": round(c.s / audio_s, 4) if audio_s else None, "peak_gib": c.peak_gib,
            "stream_first_chunk_s": round(first.s, 3)}


def quiet_progress_bars() -> None:
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _dtype(name: str, device: str):
    from mmserve.devices import resolve_dtype

    return resolve_dtype(name, device)


BENCHES = {
    "sd3": bench_sd3,
    "sd3-8bit": lambda ctx: bench_sd3(ctx, "8bit"),
    "sd3-4bit": lambda ctx: bench_sd3(ctx, "4bit"),
    "llm": bench_llm,
    "llm-8bit": lambda ctx: bench_llm(ctx, "8bit"),
    "llm-4bit": lambda ctx: bench_llm(ctx, "4bit"),
    "asr": bench_asr,
    "tts": bench_tts,
}


# ---------------------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    import torch

    tiny = args.tiny
    device = args.device or ("cpu" if tiny else "cuda")
    out_dirs = [Path(d) for d in args.out]
    record = {"name": args.name, "status": "started", "mode": f"{'tiny' if tiny else 'real-size'} on {device}",
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": machine(), "time_box_s": PLAN[args.name][0], "measures": PLAN[args.name][1]}
    write(record, out_dirs)
    t0 = time.perf_counter()
    try:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU visible")
        if args.name.endswith("bit") and device == "cpu":
            record.update(status="skipped", note="bitsandbytes quantization needs CUDA (GPU run only)")
        elif args.name.endswith("bit") and not versions()["bitsandbytes"]:
            record.update(status="skipped", note="bitsandbytes is not installed (not carried: bench/gpu/wheels.sh)")
        else:
            quiet_progress_bars()
            torch.manual_seed(0)
            ctx = {"tiny": tiny, "device": device, "work": Path(args.work)}
            record.update(status="ok", figures=BENCHES[args.name](ctx))
    except Exception as exc:  # noqa: BLE001 -- one benchmark failing must not stop the others: record it
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    write(record, out_dirs)
    print(json.dumps({k: record.get(k) for k in ("name", "status", "wall_s", "figures", "note", "error")}, default=str))
    return 0 if record["status"] in ("ok", "skipped") else 1


def cmd_plan(args) -> int:
    for name, (box, what) in PLAN.items():
        print(f"{name} {box}" if args.boxes else f"  {name:9s} {box:4d} s  {what}")
    return 0


PROBES = ["torch", "transformers", "pydantic", "soundfile", "diffusers", "funasr", "ChatTTS", "vocos", "librosa",
          "torchsde", "mmserve.runners.sd3", "mmserve.runners.llm", "mmserve.runners.paraformer", "mmserve.runners.chattts"]


def cmd_probe(args) -> int:
    """Import everything the checks need; FunASR must also have registered its model classes."""
    import importlib

    failed = []
    for name in PROBES + ["bitsandbytes"]:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                importlib.import_module(name)
            print(f"  ok   {name}")
        except Exception as exc:  # noqa: BLE001 -- reported, and only optional ones tolerated
            print(f"  FAIL {name}: {type(exc).__name__}: {exc}")
            if name != "bitsandbytes":  # optional: the 4/8-bit runs are skipped without it
                failed.append(name)
    if "funasr" not in failed:
        import funasr
        from funasr.register import tables

        missing = {"SeacoParaformer", "FsmnVADStreaming", "CTTransformer"} - set(tables.model_classes)
        if missing:
            failed.append("funasr models")
            print(f"  FAIL funasr registered no {sorted(missing)}: {funasr.get_import_errors()}")
    import torch

    print(f"  torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}; versions: {versions()}")
    return 1 if failed else 0


def cmd_configs(args) -> int:
    """Instantiate SD3 and the LLM from the shipped real configs on the meta device (no memory):
    proves the configs build before a GPU run spends minutes on them."""
    import torch

    from mmserve import model_configs

    quiet_progress_bars()
    with torch.device("meta"):
        sd3 = {k: count_params([m]) for k, m in sd3_models(model_configs.path("sd3-medium")).items()}
        llm = count_params([llm_model(model_configs.path("qwen2.5-7b-instruct"), torch.float16)])
    print(f"  sd3-medium: {sum(sd3.values()) / 1e9:.2f} B parameters "
          f"({', '.join(f'{k} {v / 1e9:.2f} B' for k, v in sd3.items())}), fp16 {sum(sd3.values()) * 2 / 2**30:.1f} GiB")
    print(f"  qwen2.5-7b-instruct: {llm / 1e9:.2f} B parameters, 16-bit {llm * 2 / 2**30:.1f} GiB")
    return 0


def cmd_summary(args) -> int:
    records = []
    for f in sorted(Path(args.dir).glob("gpu-*.json")):
        with contextlib.suppress(ValueError):
            records.append(json.loads(f.read_text()))
    order = {n: i for i, n in enumerate(PLAN)}
    records.sort(key=lambda r: order.get(r.get("name"), 99))
    for r in records:
        if r.get("status") == "started":
            r["status"] = "killed (time box)"
        print(f"  {r.get('name', '?'):9s} {r['status']:18s} {r.get('wall_s', '-'):>7} s  {headline(r)}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    return 0


def headline(r: dict) -> str:
    f = r.get("figures") or {}
    if r.get("status") != "ok":
        return (r.get("note") or r.get("error") or "")[:160]
    if "batch_1" in f:
        parts = [f"b{k[6:]}: {v['s_per_image']} s/image, peak {v['peak_gib']} GiB" for k, v in f.items()
                 if k.startswith("batch_")]
        return f"{f['width']}px {f['steps']} steps; " + "; ".join(parts) + f"; load {f['load_s']} s"
    if "tokens_per_s" in f:
        return (f"{f['tokens_per_s']} tok/s ({f['decode_tokens_per_s']} decode), {f['completion_tokens']} tokens, "
                f"TTFT {f['time_to_first_token_s']} s, peak {f['peak_gib']} GiB, load {f['load_s']} s")
    if "rtf" in f:
        return f"RTF {f['rtf']} on {f['audio_s']} s of audio, peak {f['peak_gib']} GiB, load {f['load_s']} s"
    if "goal_first_audio_ms" in f:  # bench.voice gpu: one voice-chat turn through the runners
        m = f["median"]
        return (f"first audio {m['first_audio_ms']} ms (ASR {m['asr_ms']}, LLM first token {m['llm_first_token_ms']}), "
                f"median of {f['turns']} turns, goal {f['goal_first_audio_ms']:g} ms {'met' if f['goal_met'] else 'missed'}")
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="one benchmark")
    run.add_argument("name", choices=list(BENCHES))
    run.add_argument("--tiny", action="store_true", help="tiny configs on CPU, one short pass (dry run)")
    run.add_argument("--device", help="default: cuda, or cpu with --tiny (asr/tts also run real-size on cpu)")
    run.add_argument("--work", default="/tmp/mmserve-gpu-work", help="model folders (reused across benchmarks)")
    run.add_argument("--out", action="append", default=[], help="folder for gpu-<name>.json (repeatable)")
    plan = sub.add_parser("plan", help="the benchmarks, their time boxes and what they measure")
    plan.add_argument("--boxes", action="store_true", help="only 'name seconds' lines")
    sub.add_parser("probe", help="check that every import the checks need works")
    sub.add_parser("configs", help="build SD3 and the LLM from the real configs on the meta device")
    summary = sub.add_parser("summary", help="one line per gpu-*.json in DIR")
    summary.add_argument("dir")
    summary.add_argument("--json", help="also write all records into this file")
    args = parser.parse_args()
    if args.cmd == "run" and not args.out:
        args.out = [str(REPO / "docs" / "bench")]
    commands = {"run": cmd_run, "plan": cmd_plan, "probe": cmd_probe, "configs": cmd_configs, "summary": cmd_summary}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
