#!/usr/bin/python3
"""torch_memory.py — what PyTorch keeps in memory to train torchvision's ResNet-50 (or another
torchvision model), measured on the CPU, as the reference for libcnncuda's own figures
(tests/test_memory.c pins ours). It measures only; it changes no setting that would alter them.

Method (torch 1.13.1 + torchvision 0.14.1 on the CPU; run with /usr/bin/python3):
  saved   Inside torch.autograd.graph.saved_tensors_hooks, every tensor autograd packs for
          backward during one training forward (model.train(), batch B, 3 x S x S, loss =
          cross_entropy) is recorded by its storage (data_ptr, nbytes). Distinct storages are
          summed, split into the parameters (saved weights), the network input, and
          activations (everything else). A storage saved by several ops (a ReLU output that the
          next conv also saves) counts once: that is what stays allocated.
  state   parameters + gradients + SGD momentum buffers (3 x 4 bytes per parameter).
  peak    torch.autograd.profiler.profile(profile_memory=True) over one full step (forward,
          loss, backward, optimizer.step) after a warm-up step that creates the momentum
          buffers. This torch build has no Kineto, so the allocator's own timeline is not
          exported; each op's self_cpu_memory_usage (its own allocations minus frees) is placed
          at its start when positive and its end when negative, and the running sum in time
          order is the allocated-bytes curve (net 0 over the step, as it must be). A buffer an
          op allocates and frees inside itself is not seen. Peak = params + momentum + input
          (held at the step's start: zero_grad(set_to_none=True) before it, as torch >= 2.0
          does by default) + the curve's maximum: the CPU counterpart of
          torch.cuda.max_memory_allocated.
  ours    the same three figures for libcnncuda come from the tape (distinct storages of the
          nodes' saved tensors after forward) and cnn_cpu_memory_stats (allocated / peak of the
          CPU allocator over a step); tests/test_memory.c pins the saved set exactly.
  Scaling to a GPU batch: the saved activations and the input scale with B; params, momentum
  and what the step needs beyond its saved activations (the first gradients, a few transients)
  hardly do, so the projection is params + momentum + B x saved/image + that excess at the
  largest batch measured. The CUDA figure (27.2 GiB at B=256 on an H100, FP32) also holds cuDNN
  workspaces (benchmark mode) and the caching allocator's rounding, which the CPU does not.

  /usr/bin/python3 bench/torch_memory.py --batch 8,16 --img-size 224 [--model resnet50] [--json F]
  (--batch: distinct sizes; one alone gives no line fit. Bad arguments: exit status 2.)
"""
import argparse
import json
import sys

MIB = 1024.0 * 1024.0


def saved_storages(model, x, y, torch, F):
    """Distinct storages packed for backward by one forward: dict data_ptr -> (nbytes, kind)."""
    params = {p.data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        st = t.storage()
        ptr = st.data_ptr()
        if ptr not in seen:
            kind = "param" if ptr in params else ("input" if ptr == x.data_ptr() else "activation")
            seen[ptr] = (st.nbytes(), kind)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return seen


def step_peak(model, opt, x, y, torch, F):
    """Peak allocated CPU bytes above the start of one training step, from profiler events:
    each op's own allocations count from its start, its own frees from its end (the profiler
    nets them per op, so a buffer an op allocates and frees inside itself is not seen)."""
    opt.zero_grad(set_to_none=True)
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    deltas = []
    for e in prof.function_events:
        d = e.self_cpu_memory_usage
        if d > 0:
            deltas.append((e.time_range.start, 0, d))
        elif d < 0:
            deltas.append((e.time_range.end, 1, d))
    deltas.sort()
    level = peak = 0
    for _, _, d in deltas:
        level += d
        peak = max(peak, level)
    return peak, len(deltas), level


def measure(model, batch, size, torch, F):
    """The figures of one batch size (fresh model state for each: same seeds)."""
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    n_params = sum(p.numel() for p in model.parameters())
    seen = saved_storages(model, x, y, torch, F)
    by_kind = {"param": 0, "input": 0, "activation": 0}
    for nbytes, kind in seen.values():
        by_kind[kind] += nbytes
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_peak(model, opt, x, y, torch, F)  # warm-up: creates the momentum buffers
    peak_above, n_events, net = step_peak(model, opt, x, y, torch, F)
    return {
        "batch": batch, "saved_storages": len(seen),
        "saved_activation_bytes": by_kind["activation"], "saved_input_bytes": by_kind["input"],
        "saved_param_bytes": by_kind["param"],
        "saved_bytes_per_image": (by_kind["activation"] + by_kind["input"]) / batch,
        "profiler_memory_events": n_events, "step_net_bytes": net,
        # At the step's start: params + momentum (grads were set to None), input not counted.
        "step_peak_above_start_bytes": peak_above,
        "step_peak_bytes": peak_above + 2 * 4 * n_params + x.numel() * 4,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", default="8,16",
                    help="batch sizes, comma-separated, each once; two or more fit "
                    "peak = a + b * B")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu-batch", type=int, default=256, help="batch to project to")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    # Checked before torch is imported: a size given twice would divide the line fit by zero
    # after all the measuring, before --json is written.
    batches = []
    for v in a.batch.split(","):
        if not v.isdigit() or int(v) < 1:
            ap.error("--batch '%s': want batch sizes >= 1, comma-separated" % a.batch)
        if int(v) in batches:
            ap.error("--batch '%s': batch size %s is given twice" % (a.batch, v))
        batches.append(int(v))

    import torch
    import torch.nn.functional as F
    import torchvision

    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.model)().train()
    n_params = sum(p.numel() for p in model.parameters())
    runs = [measure(model, b, a.img_size, torch, F) for b in batches]
    print("%s %dx%d, torch %s (CPU, %d threads), %d parameters: params + grads + momentum "
          "%.1f MiB" % (a.model, a.img_size, a.img_size, torch.__version__, a.threads, n_params,
                        12 * n_params / MIB))
    for r in runs:
        print("  B=%d: saved %d storages: activations %.1f MiB + input %.1f MiB (%.2f MiB/image)"
              ", params %.1f MiB; step peak %.1f MiB (start + %.1f MiB)" % (
                  r["batch"], r["saved_storages"], r["saved_activation_bytes"] / MIB,
                  r["saved_input_bytes"] / MIB, r["saved_bytes_per_image"] / MIB,
                  r["saved_param_bytes"] / MIB, r["step_peak_bytes"] / MIB,
                  r["step_peak_above_start_bytes"] / MIB))
    out = {"tool": "torch_memory", "torch": torch.__version__, "model": a.model,
           "img_size": a.img_size, "params": n_params, "runs": runs}
    # The peak at the GPU batch: what the end of the forward holds there (params, momentum, the
    # input, the saved activations per image of the largest run) plus what the largest run's
    # step needed beyond its saved activations (early gradients and transients: nearly constant).
    big = max(runs, key=lambda r: r["batch"])
    beyond = big["step_peak_above_start_bytes"] - big["saved_activation_bytes"]
    per_image = (big["saved_activation_bytes"] + big["saved_input_bytes"]) / big["batch"]
    projected = 2 * 4 * n_params + a.gpu_batch * per_image + beyond
    out.update({"gpu_batch": a.gpu_batch, "peak_beyond_saved_bytes": beyond,
                "projected_peak_bytes_at_gpu_batch": projected})
    print("  projected peak at B=%d: params + momentum %.1f MiB + B x %.2f MiB saved + %.1f MiB "
          "beyond (B=%d) = %.2f GiB" % (a.gpu_batch, 8 * n_params / MIB, per_image / MIB,
                                        beyond / MIB, big["batch"], projected / MIB / 1024))
    if len(runs) >= 2:  # sizes are distinct (checked above): no division by zero
        lo, hi = runs[0], runs[-1]
        slope = (hi["step_peak_bytes"] - lo["step_peak_bytes"]) / (hi["batch"] - lo["batch"])
        base = lo["step_peak_bytes"] - slope * lo["batch"]
        out.update({"peak_fit_per_image_bytes": slope, "peak_fit_fixed_bytes": base,
                    "peak_fit_at_gpu_batch_bytes": base + slope * a.gpu_batch})
        print("  (a straight line through the measured peaks: %.1f MiB + B x %.2f MiB -> %.2f GiB;"
              " it underestimates, as small batches peak later in backward)" % (
                  base / MIB, slope / MIB, (base + slope * a.gpu_batch) / MIB / 1024))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
