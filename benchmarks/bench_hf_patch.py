"""Peak CPU memory of one forward+backward of a tiny random Llama: the Trainer's label smoothing on full logits
against labelsmooth.integrations.huggingface.patch (the loss from the hidden states, chunked).

Memory: torch.profiler's allocation records (profile_memory=True), replayed in time order; the peak of the
live bytes allocated during the step (benchmarks/_memory.py; the same measure as tests/integrations/_memory.py).

    python benchmarks/bench_hf_patch.py --vocab 32000 --batch 4 --seq 256
"""

from __future__ import annotations

import argparse
import platform

import torch
import transformers
from transformers.trainer_pt_utils import LabelSmoother

from _memory import peak_bytes
from labelsmooth.integrations.huggingface import patch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=None, help="rows per chunk (default: linear_cross_entropy's)")
    a = ap.parse_args()
    cfg = transformers.LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=2 * a.hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=a.seq,
    )  # fmt: skip
    torch.manual_seed(0)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    plain = transformers.AutoModelForCausalLM.from_config(cfg).train()
    smoother = LabelSmoother(epsilon=0.1)
    unpatched = peak_bytes(lambda: smoother(plain(input_ids=ids), ids, shift_labels=True).backward())
    kw = {} if a.chunk is None else {"chunk_size": a.chunk}
    model = patch(transformers.AutoModelForCausalLM.from_config(cfg), label_smoothing=0.1, **kw).train()
    patched = peak_bytes(lambda: model(input_ids=ids, labels=ids).loss.backward())
    logits = a.batch * a.seq * a.vocab * 4
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print(f"Llama 2 layers, hidden {a.hidden}, V={a.vocab}, {a.batch}×{a.seq} tokens, ε=0.1, fp32, fwd+bwd")
    print(f"  logits alone           {logits / 2**20:8.1f} MiB")
    print(f"  Trainer LabelSmoother  {unpatched / 2**20:8.1f} MiB peak")
    print(f"  patch()                {patched / 2**20:8.1f} MiB peak  ({patched / unpatched:.2f}×)")


if __name__ == "__main__":
    main()
