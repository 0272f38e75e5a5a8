#!/usr/bin/env python3
"""torch_reference.py — PyTorch side of cnnbench: the same conv shape sets, GEMM and zoo models
timed through PyTorch (cuDNN, torch.backends.cudnn.benchmark=True), written in cnnbench's JSON
schema so that bench/compare can put the two side by side. It never imports torch before it
needs a GPU: --check-schema and the shape tables work on any machine with python3.

  python3 bench/torch_reference.py conv --shapes resnet50 --batch 32 --json torch_conv.json
  python3 bench/torch_reference.py model resnet50 --batch 32 --json torch_resnet50.json
  python3 bench/torch_reference.py --check-schema cnnbench.json
"""
import argparse
import json
import sys

# ---- the JSON schema shared with cnnbench ---------------------------------------------------------
TOP_KEYS = {"tool": str, "device": str, "backend": str, "tf32": bool, "results": list}
ROW_KEYS = {"mode": str, "name": str, "shape": str, "pass": str, "median_ms": (int, float),
            "min_ms": (int, float), "max_ms": (int, float), "check": str}
PASSES = {"fwd", "bwd_data", "bwd_filter", "bwd", "train", "infer"}
CHECKS = {"ok", "mismatch", "n/a"}


def schema_errors(doc):
    """Every way doc departs from the shared schema (an empty list when it conforms)."""
    errs = []
    if not isinstance(doc, dict):
        return ["top level is not an object"]
    for k, t in TOP_KEYS.items():
        if k not in doc:
            errs.append("missing top-level key '%s'" % k)
        elif not isinstance(doc[k], t):
            errs.append("top-level '%s' has the wrong type" % k)
    if doc.get("tool") not in ("cnnbench", "torch"):
        errs.append("tool must be 'cnnbench' or 'torch'")
    for i, r in enumerate(doc.get("results") or []):
        if not isinstance(r, dict):
            errs.append("results[%d] is not an object" % i)
            continue
        for k, t in ROW_KEYS.items():
            if k not in r:
                errs.append("results[%d]: missing '%s'" % (i, k))
            elif not isinstance(r[k], t) or isinstance(r[k], bool):
                errs.append("results[%d]: '%s' has the wrong type" % (i, k))
        if r.get("pass") not in PASSES:
            errs.append("results[%d]: pass '%s' is not one of %s" % (i, r.get("pass"), sorted(PASSES)))
        if r.get("check") not in CHECKS:
            errs.append("results[%d]: check '%s' is not one of %s" % (i, r.get("check"), sorted(CHECKS)))
        if not any(k in r for k in ("gflops", "gbs", "img_per_s")) and r.get("mode") != "layer":
            errs.append("results[%d]: needs gflops, gbs or img_per_s" % i)
        t = [r.get(k) for k in ("min_ms", "median_ms", "max_ms")]
        if all(isinstance(v, (int, float)) for v in t) and not (0 <= t[0] <= t[1] <= t[2]):
            errs.append("results[%d]: want 0 <= min_ms <= median_ms <= max_ms" % i)
    return errs


def load(path):
    """A benchmark JSON file, validated; raises ValueError naming the file and the problem."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError("%s: %s" % (path, e))
    errs = schema_errors(doc)
    if errs:
        raise ValueError("%s: %s" % (path, "; ".join(errs[:5])))
    return doc


# ---- the shapes (the same tables as tools/common/bench_shapes.c) -----------------------------------
# (C, H, K, R, stride, pad, count) at 224x224, square, groups 1.
CONV_SETS = {
    "resnet50": [(3, 224, 64, 7, 2, 3, 1),
                 (64, 56, 64, 1, 1, 0, 1), (64, 56, 64, 3, 1, 1, 3), (64, 56, 256, 1, 1, 0, 4),
                 (256, 56, 64, 1, 1, 0, 2),
                 (256, 56, 128, 1, 1, 0, 1), (128, 56, 128, 3, 2, 1, 1), (128, 28, 512, 1, 1, 0, 4),
                 (256, 56, 512, 1, 2, 0, 1), (512, 28, 128, 1, 1, 0, 3), (128, 28, 128, 3, 1, 1, 3),
                 (512, 28, 256, 1, 1, 0, 1), (256, 28, 256, 3, 2, 1, 1), (256, 14, 1024, 1, 1, 0, 6),
                 (512, 28, 1024, 1, 2, 0, 1), (1024, 14, 256, 1, 1, 0, 5), (256, 14, 256, 3, 1, 1, 5),
                 (1024, 14, 512, 1, 1, 0, 1), (512, 14, 512, 3, 2, 1, 1), (512, 7, 2048, 1, 1, 0, 3),
                 (1024, 14, 2048, 1, 2, 0, 1), (2048, 7, 512, 1, 1, 0, 2), (512, 7, 512, 3, 1, 1, 2)],
    "vgg16": [(3, 224, 64, 3, 1, 1, 1), (64, 224, 64, 3, 1, 1, 1), (64, 112, 128, 3, 1, 1, 1),
              (128, 112, 128, 3, 1, 1, 1), (128, 56, 256, 3, 1, 1, 1), (256, 56, 256, 3, 1, 1, 2),
              (256, 28, 512, 3, 1, 1, 1), (512, 28, 512, 3, 1, 1, 2), (512, 14, 512, 3, 1, 1, 3)],
    "alexnet": [(3, 224, 64, 11, 4, 2, 1), (64, 27, 192, 5, 1, 2, 1), (192, 13, 384, 3, 1, 1, 1),
                (384, 13, 256, 3, 1, 1, 1), (256, 13, 256, 3, 1, 1, 1)],
}


def conv_shapes(args):
    """[(shape_string, (n,c,h,w,k,r,s,stride,pad,groups), count)] for the command line."""
    out = []
    if args.shapes or not args.shape:
        for c, h, k, r, st, p, cnt in CONV_SETS[args.shapes or "resnet50"]:
            out.append((args.batch, c, h, h, k, r, r, st, p, 1, cnt))
    for s in args.shape or []:
        v = [int(x) for x in s.split(",")]
        if len(v) not in (9, 10):
            raise SystemExit("torch_reference: malformed --shape '%s'" % s)
        out.append(tuple(v + [1] * (10 - len(v))) + (1,))
    return [(",".join(str(x) for x in t[:10]), t[:10], t[10]) for t in out]


# ---- timing (needs torch and a GPU) ------------------------------------------------------------------
def time_cuda(torch, fn, setup, warmup, iters, flush):
    """median/min/max ms of fn() measured with CUDA events, setup() and an L2 flush untimed."""
    times = []
    for i in range(warmup + iters):
        if setup:
            setup()
        flush.fill_(float(i))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return med, times[0], times[-1]


def row(mode, name, shape, pas, t, **extra):
    r = {"mode": mode, "backend": "cudnn", "name": name, "shape": shape, "pass": pas,
         "median_ms": t[0], "min_ms": t[1], "max_ms": t[2], "count": 1, "check": "n/a"}
    r.update(extra)
    return r


def bench_conv(torch, args, flush):
    F = torch.nn.functional
    rows = []
    for shape, (n, c, h, w, k, r, s, st, p, g), count in conv_shapes(args):
        x = torch.rand(n, c, h, w, device="cuda") * 2 - 1
        wt = torch.rand(k, c // g, r, s, device="cuda") * 2 - 1
        y = F.conv2d(x, wt, None, st, p, 1, g)
        dy = torch.rand_like(y) * 2 - 1
        P, Q = y.shape[2], y.shape[3]
        flops = 2.0 * n * k * P * Q * (c // g) * r * s
        state = {}

        def fwd():
            with torch.no_grad():
                F.conv2d(x, wt, None, st, p, 1, g)

        def setup(req):
            def f():
                xx = x.detach().requires_grad_(req == "x")
                ww = wt.detach().requires_grad_(req == "w")
                state["y"], state["inp"] = F.conv2d(xx, ww, None, st, p, 1, g), xx if req == "x" else ww
            return f

        def bwd():
            torch.autograd.grad(state["y"], state["inp"], dy)

        name = args.shapes or ("resnet50" if not args.shape else "custom")
        for pas, fn, su in (("fwd", fwd, None), ("bwd_data", bwd, setup("x")), ("bwd_filter", bwd, setup("w"))):
            t = time_cuda(torch, fn, su, args.warmup, args.iters, flush)
            rows.append(row("conv", name, shape, pas, t, gflops=flops / (t[0] * 1e6), count=count))
            print("%-34s %-10s %9.3f ms %8.2f TFLOP/s" % (shape, pas, t[0], flops / (t[0] * 1e9)))
    return rows


def lenet5(torch):
    nn = torch.nn
    # Identical to the zoo's lenet5: conv1 6@5x5, avgpool2, conv2 16@5x5, avgpool2, fc
    # 400-120-84-10, ReLU; torchvision-style names.
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def count_macs(torch, model, x):
    """Conv and linear multiply-accumulates of one forward (bias adds excluded), as the zoo's
    summary counts them."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total[0] += out.numel() * m.in_features
    hs = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def bench_model(torch, args, flush):
    if args.name == "lenet5":
        model, chans, size, classes = lenet5(torch), 1, args.img_size or 32, 10
    else:
        import torchvision
        model, chans, size, classes = getattr(torchvision.models, args.name)(), 3, args.img_size or 224, 1000
    model = model.cuda()
    B = args.batch
    x = torch.rand(B, chans, size, size, device="cuda") * 2 - 1
    labels = torch.tensor([(i * 7919) % classes for i in range(B)], device="cuda")
    macs = count_macs(torch, model, x)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    shape = "%d,%d,%d,%d" % (B, chans, size, size)

    def train():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)
    model.train()
    torch.cuda.reset_peak_memory_stats()
    t = time_cuda(torch, train, None, args.warmup, args.iters, flush)
    mem = torch.cuda.max_memory_allocated() / 2 ** 20
    rows = [row("model", args.name, shape, "train", t, img_per_s=B / (t[0] * 1e-3),
                gflops=3 * 2.0 * macs / (t[0] * 1e6), peak_mem_mb=mem)]
    model.eval()
    t = time_cuda(torch, infer, None, args.warmup, args.iters, flush)
    rows.append(row("model", args.name, shape, "infer", t, img_per_s=B / (t[0] * 1e-3),
                    gflops=2.0 * macs / (t[0] * 1e6)))
    for r in rows:
        print("%-10s %-16s %-6s %9.3f ms %10.1f img/s" % (r["name"], r["shape"], r["pass"],
                                                           r["median_ms"], r["img_per_s"]))
    return rows


def bench_gemm(torch, args, flush):
    m, n, k = args.mnk
    a = torch.rand(m, k, device="cuda") * 2 - 1
    w = torch.rand(n, k, device="cuda") * 2 - 1

    def fn():
        torch.nn.functional.linear(a, w)
    t = time_cuda(torch, fn, None, args.warmup, args.iters, flush)
    return [row("gemm", "sgemm", "%d,%d,%d" % (m, n, k), "fwd", t, gflops=2.0 * m * n * k / (t[0] * 1e6))]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", choices=["conv", "model", "gemm"])
    ap.add_argument("name", nargs="?", help="model: lenet5, alexnet, vgg16, resnet50, ...")
    ap.add_argument("--shapes", choices=sorted(CONV_SETS))
    ap.add_argument("--shape", action="append", help="N,C,H,W,K,R,S,stride,pad[,groups]")
    ap.add_argument("--mnk", type=lambda s: [int(v) for v in s.split(",")], default=[1024, 1024, 1024])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--check-schema", metavar="FILE", help="validate a JSON file and exit")
    args = ap.parse_args(argv)
    if args.check_schema:
        try:
            doc = load(args.check_schema)
        except ValueError as e:
            print("torch_reference: %s" % e, file=sys.stderr)
            return 1
        print("%s: schema ok (%d results)" % (args.check_schema, len(doc["results"])))
        return 0
    if not args.mode or (args.mode == "model" and not args.name):
        ap.error("a mode is needed (conv, gemm, or model NAME)")
    try:
        import torch
    except ImportError:
        print("torch_reference: PyTorch is not installed (it needs torch and torchvision)",
              file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("torch_reference: no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(1)
    flush = torch.empty(32 << 20, device="cuda")  # 128 MiB written between repeats: L2 flush
    print("torch %s on %s | cudnn.benchmark on | tf32 %s | CUDA events, warmup %d, iters %d"
          % (torch.__version__, torch.cuda.get_device_name(), args.tf32, args.warmup, args.iters))
    rows = {"conv": bench_conv, "model": bench_model, "gemm": bench_gemm}[args.mode](torch, args, flush)
    doc = {"tool": "torch", "version": torch.__version__, "device": torch.cuda.get_device_name(),
           "backend": "cudnn", "tf32": args.tf32, "mode": args.mode, "batch": args.batch,
           "warmup": args.warmup, "iters": args.iters, "timing": "CUDA events", "results": rows}
    errs = schema_errors(doc)
    if errs:
        print("torch_reference: internal schema error: %s" % errs, file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
