"""What a live turn's streaming state weighs, and what a chunk costs, on the online Paraformer-large
architecture (random weights, the real dimensions: 220M parameters).

    python -m bench streaming-state [--chunks 8] [--ncpu 2] [--out docs/bench/streaming-state.json]

Streams noise through the streaming runner in 600 ms chunks (FunASR's defaults: chunk_size
[0, 10, 5], encoder look-back 4, decoder look-back 1) and records, after each chunk, the size of the
turn's FunASR cache as `torch.save` writes it, and the chunk's wall time. The size is what each call
would carry both ways if the state travelled with the calls instead of staying in the replica
(`mmserve/runners/paraformer_streaming.py` says why it stays).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

from bench import report as rw
from bench.report import BENCH_DIR

OUT = BENCH_DIR / "streaming-state.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=8, help="600 ms chunks streamed")
    parser.add_argument("--ncpu", type=int, default=2, help="torch threads (the runner's ncpu)")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()

    import numpy as np
    import torch

    from mmserve.runners.paraformer_streaming import StreamingAsrArgs, StreamingParaformerRunner
    from mmserve.tiny.paraformer_streaming import build

    load_start = rw.loadavg()
    folder = build(Path(tempfile.mkdtemp(prefix="mmserve-online-large-")), size="large")
    runner = StreamingParaformerRunner(StreamingAsrArgs(model=str(folder), device="cpu", ncpu=opts.ncpu))
    stride = runner.args.chunk_samples
    audio = np.random.default_rng(0).normal(0.0, 0.1, stride * opts.chunks).astype(np.float32)
    runner.stream("bench", "turn", 0, audio[:stride])  # the first call sets FunASR up: not timed
    chunks = []
    for seq in range(1, opts.chunks):
        start = time.perf_counter()
        runner.stream("bench", "turn", seq, audio[seq * stride: (seq + 1) * stride])
        elapsed = (time.perf_counter() - start) * 1000
        buf = io.BytesIO()
        torch.save(runner._streams[("bench", "turn")].cache, buf)
        chunks.append({"chunk": seq + 1, "state_bytes": len(buf.getvalue()), "ms": round(elapsed, 1)})
    rw.write(opts.out, {
        "tool": "bench.streaming_state", "command": rw.command("streaming-state"), "date": rw.now(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                    "loadavg_at_end": rw.loadavg()},
        "settings": {"architecture": "ParaformerStreaming (SANMEncoderChunkOpt 50 x 512, ParaformerSANMDecoder "
                     "16 x 512, vocabulary 8404), random weights", "parameters": sum(
                         p.numel() for p in runner._auto.model.parameters()),
                     **runner.args.model_dump(include={"chunk_size", "encoder_chunk_look_back",
                                                       "decoder_chunk_look_back", "ncpu"})},
        "chunks": chunks,
        "steady_state_bytes": chunks[-1]["state_bytes"],
        "ms_per_600ms_chunk_p50": sorted(c["ms"] for c in chunks)[len(chunks) // 2],
    })
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
