#!/usr/bin/env python3
"""torch_reference.py — PyTorch side of cnnbench: the same conv shape sets, GEMM, batch norm,
pooling, elementwise ops and zoo models timed through PyTorch (cuDNN with
torch.backends.cudnn.benchmark=True, or the CPU with --device cpu), written in cnnbench's JSON
schema, row for row, so that bench/compare can put the two side by side. It imports torch only
when it times something: --check-schema and the shape tables work on any machine with python3.
Runs with torch 1.13 and 2.x (only APIs present in both). Refuses what cnnbench refuses, with
exit status 2: a NAME but after model, an option given to a mode it does not apply to, and
conv's --batch with only --shape options (each gives its own N).

  python3 bench/torch_reference.py conv --shapes resnet50 --batch 64 --json torch_conv.json
  python3 bench/torch_reference.py model resnet50 --batch 256 --json torch_resnet50.json
  python3 bench/torch_reference.py model alexnet --batch 256 --layers --json torch_alexnet.json
  python3 bench/torch_reference.py bn --device cpu --batch 2 --iters 2
  python3 bench/torch_reference.py --check-schema cnnbench.json
"""
import argparse
import json
import os
import resource
import signal
import sys
import time

# ---- the JSON schema shared with cnnbench ---------------------------------------------------------
TOP_KEYS = {"tool": str, "device": str, "backend": str, "tf32": bool, "results": list}
ROW_KEYS = {"mode": str, "name": str, "shape": str, "pass": str, "median_ms": (int, float),
            "min_ms": (int, float), "max_ms": (int, float), "check": str}
PASSES = {"fwd", "bwd_data", "bwd_filter", "bwd", "train", "infer"}
CHECKS = {"ok", "mismatch", "n/a"}
MODES = ("conv", "gemm", "bn", "pool", "elementwise", "model")
# The modes an option means something in, as cnnbench's (tools/cnnbench.c g_applies): an option
# given to another mode is refused (exit 2), not ignored. Options not listed: every mode.
APPLIES = (("--shape", ("conv",)), ("--shapes", ("conv",)), ("--mnk", ("gemm",)),
           ("--layers", ("model",)), ("--img-size", ("model",)),
           ("--batch", ("conv", "bn", "pool", "elementwise", "model")))


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


# ---- the shapes (the same tables as tools/common/bench_shapes.c and bench_ops.c) ------------------
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
BN_SHAPES = [(64, 112), (256, 56), (1024, 14)]  # (C, H): square, at --batch
# (C, H, kernel, stride, pad, average?, name)
POOL_CASES = [(64, 112, 3, 2, 1, False, "max_pool"), (128, 112, 2, 2, 0, False, "max_pool"),
              (256, 56, 2, 2, 0, True, "avg_pool")]


def conv_shapes(args):
    """[(shape_string, (n,c,h,w,k,r,s,stride,pad,groups), count, name)] for the command line:
    the set's shapes, named as the set, then each --shape, named "custom". ValueError for a
    --shape that cnnbench refuses (main checks them before importing torch)."""
    out = []
    if args.shapes or not args.shape:
        for c, h, k, r, st, p, cnt in CONV_SETS[args.shapes or "resnet50"]:
            out.append((args.batch, c, h, h, k, r, r, st, p, 1, cnt, args.shapes or "resnet50"))
    for s in args.shape or []:
        try:
            v = [int(x) for x in s.split(",")]
        except ValueError:
            v = []
        if len(v) not in (9, 10):
            raise ValueError("malformed --shape '%s' (want N,C,H,W,K,R,S,stride,pad[,groups])"
                             % s)
        v += [1] * (10 - len(v))
        n, c, h, w, k, r, sk, st, p, g = v
        # cnnbench's rules, so that both refuse the same shapes with a message.
        if min(n, c, h, w, k, r, sk, st, g) <= 0 or p < 0:
            raise ValueError("--shape '%s': only the padding may be 0, and nothing negative" % s)
        if c % g or k % g:
            raise ValueError("--shape '%s': groups %d must divide C %d and K %d" % (s, g, c, k))
        if h + 2 * p < r or w + 2 * p < sk:
            raise ValueError("--shape '%s': the kernel is larger than the padded input" % s)
        out.append(tuple(v) + (1, "custom"))
    return [(",".join(str(x) for x in t[:10]), t[:10], t[10], t[11]) for t in out]


# ---- timing ---------------------------------------------------------------------------------------
class Stopped(Exception):
    """SIGTERM / SIGINT: stop timing and write the rows completed so far."""


def on_stop_signal(sig, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second signal ends the process at once
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise Stopped()


class Bench:
    """The device under test, its timer, the cache-flush buffer and the rows so far."""

    def __init__(self, torch, args):
        self.torch, self.args, self.dev = torch, args, args.device
        self.rows = []
        # Larger than the last-level cache (H100 L2: 50 MB; server CPUs' L3), written between
        # repeats as cnnbench does: 128 MiB on the GPU, 64 MiB on the CPU.
        self.flush = torch.empty((32 if self.dev == "cuda" else 16) << 20, device=self.dev)

    def sync(self):
        if self.dev == "cuda":
            self.torch.cuda.synchronize()

    def time(self, fn, setup=None):
        """median/min/max ms of fn(): CUDA events on the GPU, perf_counter on the CPU; setup()
        and the cache flush untimed."""
        torch, times = self.torch, []
        for i in range(self.args.warmup + self.args.iters):
            if setup:
                setup()
            self.flush.fill_(float(i))
            if self.dev == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                fn()
                ms = (time.perf_counter() - t0) * 1e3
            if i >= self.args.warmup:
                times.append(ms)
        times.sort()
        n = len(times)
        med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
        return med, times[0], times[-1]

    def rand(self, *shape, lo=-1.0, hi=1.0):
        """Uniform in [lo, hi): never zeros, which some kernels shortcut."""
        return self.torch.rand(*shape, device=self.dev) * (hi - lo) + lo

    def row(self, mode, name, shape, pas, t, count=1, **extra):
        r = {"mode": mode, "backend": "cudnn" if self.dev == "cuda" else "cpu", "name": name,
             "shape": shape, "pass": pas, "median_ms": t[0], "min_ms": t[1], "max_ms": t[2],
             "count": count, "check": "n/a"}
        r.update(extra)
        thr = ("%10.1f img/s" % r["img_per_s"] if "img_per_s" in r
               else "%8.2f GFLOP/s" % r["gflops"] if "gflops" in r
               else "%8.1f GB/s" % r["gbs"] if "gbs" in r else "")
        print("%-11s %-10s %-30s %-10s %9.3f ms %s" % (mode, name, shape, pas, t[0], thr))
        sys.stdout.flush()
        self.rows.append(r)
        return r


def grad_pass(torch, b, fwd, inputs, wanted, dy):
    """(setup, run) timing the backward of fwd(*inputs) for the inputs flagged in wanted; the
    forward is recorded untimed in setup."""
    state = {}

    def setup():
        xs = [t.detach().requires_grad_(w) for t, w in zip(inputs, wanted)]
        state["y"] = fwd(*xs)
        state["need"] = [x for x, w in zip(xs, wanted) if w]

    def run():
        torch.autograd.grad(state["y"], state["need"], dy)
    return setup, run


def bench_conv(torch, b, args):
    F = torch.nn.functional
    rows = []
    for shape, (n, c, h, w, k, r, s, st, p, g), count, name in conv_shapes(args):
        x, wt = b.rand(n, c, h, w), b.rand(k, c // g, r, s)

        def conv(xx, ww):
            return F.conv2d(xx, ww, None, st, p, 1, g)
        with torch.no_grad():
            y = conv(x, wt)
        dy = b.rand(*y.shape)
        P, Q = y.shape[2], y.shape[3]
        flops = 2.0 * n * k * P * Q * (c // g) * r * s
        nbytes = 4.0 * (x.numel() + wt.numel() + y.numel())

        def fwd():
            with torch.no_grad():
                conv(x, wt)
        for pas, want in (("fwd", None), ("bwd_data", [True, False]), ("bwd_filter", [False, True])):
            setup, run = (None, fwd) if want is None else grad_pass(torch, b, conv, [x, wt], want, dy)
            t = b.time(run, setup)
            rows.append(b.row("conv", name, shape, pas, t, count, gflops=flops / (t[0] * 1e6),
                              gbs=nbytes / (t[0] * 1e6)))
        del x, wt, y, dy
    return rows


def bench_gemm(torch, b, args):
    m, n, k = args.mnk
    a, w = b.rand(m, k), b.rand(n, k)

    def fn():
        torch.nn.functional.linear(a, w)
    t = b.time(fn)
    nbytes = 4.0 * (m * k + n * k + m * n)
    return [b.row("gemm", "sgemm", "%d,%d,%d" % (m, n, k), "fwd", t,
                  gflops=2.0 * m * n * k / (t[0] * 1e6), gbs=nbytes / (t[0] * 1e6))]


def bench_bn(torch, b, args):
    F = torch.nn.functional
    rows = []
    for c, h in BN_SHAPES:
        n = args.batch
        x, dy = b.rand(n, c, h, h), b.rand(n, c, h, h)
        gamma, beta = b.rand(c, lo=0.5, hi=1.5), b.rand(c)
        rm, rv = torch.zeros(c, device=b.dev), torch.ones(c, device=b.dev)

        def bn(xx, gg, bb):
            return F.batch_norm(xx, rm, rv, gg, bb, True, 0.1, 1e-5)

        def fwd():
            with torch.no_grad():
                bn(x, gamma, beta)
        nb = 4.0 * x.numel()
        shape = "%d,%d,%d,%d" % (n, c, h, h)
        # Minimal traffic, as cnnbench counts it: forward reads x twice and writes y; backward
        # reads x and dy twice and writes dx.
        t = b.time(fwd)
        rows.append(b.row("bn", "batch_norm", shape, "fwd", t, gbs=3 * nb / (t[0] * 1e6)))
        setup, run = grad_pass(torch, b, bn, [x, gamma, beta], [True, True, True], dy)
        t = b.time(run, setup)
        rows.append(b.row("bn", "batch_norm", shape, "bwd", t, gbs=5 * nb / (t[0] * 1e6)))
        del x, dy
    return rows


def bench_pool(torch, b, args):
    F = torch.nn.functional
    rows = []
    for c, h, k, st, p, avg, name in POOL_CASES:
        n = args.batch
        x = b.rand(n, c, h, h)

        def pool(xx):
            return F.avg_pool2d(xx, k, st, p) if avg else F.max_pool2d(xx, k, st, p)
        with torch.no_grad():
            y = pool(x)
        dy = b.rand(*y.shape)

        def fwd():
            with torch.no_grad():
                pool(x)
        nbytes = 4.0 * (x.numel() + y.numel())
        shape = "%d,%d,%d,%d,k%d,s%d,p%d" % (n, c, h, h, k, st, p)
        t = b.time(fwd)
        rows.append(b.row("pool", name, shape, "fwd", t, gbs=nbytes / (t[0] * 1e6)))
        setup, run = grad_pass(torch, b, pool, [x], [True], dy)
        t = b.time(run, setup)
        rows.append(b.row("pool", name, shape, "bwd", t, gbs=nbytes / (t[0] * 1e6)))
        del x, y, dy
    return rows


def bench_elementwise(torch, b, args):
    F = torch.nn.functional
    n = args.batch
    x, x2, dy = b.rand(n, 256, 56, 56), b.rand(n, 256, 56, 56), b.rand(n, 256, 56, 56)
    nb = 4.0 * x.numel()
    shape = "%d,256,56,56" % n

    def relu():
        with torch.no_grad():
            F.relu(x)

    def add():
        with torch.no_grad():
            torch.add(x, x2)
    t = b.time(relu)
    rows = [b.row("elementwise", "relu", shape, "fwd", t, gbs=2 * nb / (t[0] * 1e6))]
    setup, run = grad_pass(torch, b, F.relu, [x], [True], dy)
    t = b.time(run, setup)
    rows.append(b.row("elementwise", "relu", shape, "bwd", t, gbs=3 * nb / (t[0] * 1e6)))
    t = b.time(add)
    rows.append(b.row("elementwise", "add", shape, "fwd", t, gbs=3 * nb / (t[0] * 1e6)))
    return rows


def lenet5(torch, size=32):
    from collections import OrderedDict
    nn = torch.nn
    # Identical to the zoo's lenet5: conv1 6@5x5, avgpool2, conv2 16@5x5, avgpool2, fc
    # 400-120-84-10, ReLU; the zoo's module names (which --layers rows pair on). A 28x28 input
    # is zero-padded to 32x32 by conv1's padding, as the zoo does.
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, 5, padding=2 if size == 28 else 0)), ("act1", nn.ReLU()),
        ("pool1", nn.AvgPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("act2", nn.ReLU()), ("pool2", nn.AvgPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(400, 120)), ("act3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("act4", nn.ReLU()), ("fc3", nn.Linear(84, 10))]))


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


def bench_layers(torch, b, model, x):
    """cnnbench --layers' rows: each leaf module (Flatten, a view, aside) alone on the input it
    gets in one training-mode forward, timed forward (no grad) and forward + backward (the
    gradients of its parameters and, but for the first layer, which reads the images, of its
    input); an in-place ReLU runs out of place, as ours does."""
    calls = []  # a module called more than once (ResNet's relu) gives a row per call, one name

    def pre(name):
        def hook(m, inp):
            calls.append((name, m, tuple(inp[0].shape)))
        return hook
    hs = [m.register_forward_pre_hook(pre(n)) for n, m in model.named_modules()
          if n and not list(m.children())]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    rows = []
    for i, (name, m, shp) in enumerate(calls):
        if isinstance(m, torch.nn.Flatten):
            continue
        inplace = getattr(m, "inplace", False)
        if inplace:
            m.inplace = False
        xin = b.rand(*shp)
        with torch.no_grad():
            dy = b.rand(*m(xin).shape)
        need = ([xin.detach().requires_grad_(True)] if i > 0 else []) + list(m.parameters())

        def fwd():
            with torch.no_grad():
                m(xin)

        def fwd_bwd():
            y = m(need[0] if i > 0 else xin)
            if need:
                torch.autograd.grad(y, need, dy)
        tf = b.time(fwd)
        tb = b.time(fwd_bwd)
        if inplace:
            m.inplace = True
        shape = "(%s)" % ", ".join(str(d) for d in shp)
        rows.append(b.row("layer", name, shape, "infer", tf))
        rows.append(b.row("layer", name, shape, "train", tb))
    return rows


def bench_model(torch, b, args):
    if args.name == "lenet5":
        model, chans, size, classes = lenet5(torch, args.img_size or 32), 1, args.img_size or 32, 10
    else:
        import torchvision
        if not hasattr(torchvision.models, args.name):
            raise SystemExit("torch_reference: torchvision has no model '%s'" % args.name)
        model, chans, size, classes = getattr(torchvision.models, args.name)(), 3, args.img_size or 224, 1000
    model = model.to(b.dev)
    B = args.batch
    x = b.rand(B, chans, size, size)
    labels = torch.tensor([(i * 7919) % classes for i in range(B)], device=b.dev)
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
    if b.dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = b.time(train)
    # The same measure as cnnbench: allocated device bytes (the cache flush buffer included on
    # both sides), or the process's peak RSS on the CPU.
    mem = (torch.cuda.max_memory_allocated() / 2 ** 20 if b.dev == "cuda"
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    rows = [b.row("model", args.name, shape, "train", t, img_per_s=B / (t[0] * 1e-3),
                  gflops=3 * 2.0 * macs / (t[0] * 1e6), peak_mem_mb=mem)]
    model.eval()
    t = b.time(infer)
    rows.append(b.row("model", args.name, shape, "infer", t, img_per_s=B / (t[0] * 1e-3),
                      gflops=2.0 * macs / (t[0] * 1e6)))
    print("peak %s memory during training: %.1f MiB" % ("device" if b.dev == "cuda" else "host", mem))
    if args.layers:
        rows += bench_layers(torch, b, model, x)
    return rows


def set_tf32(torch, on):
    """TF32 for matmul and cuDNN conv, both off by default here (torch's cuDNN default is on).
    torch >= 2.9 has fp32_precision and warns about the old flags, which older torch has only."""
    mm, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    try:  # torch 1.13's matmul object raises AssertionError for unknown attributes
        new_api = conv is not None and hasattr(conv, "fp32_precision") and hasattr(mm, "fp32_precision")
    except AssertionError:
        new_api = False
    if new_api:
        mm.fp32_precision = conv.fp32_precision = "tf32" if on else "ieee"
    else:
        mm.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def device_name(torch, dev):
    if dev == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"  # as cnnbench names a CPU it cannot read


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", choices=MODES)
    ap.add_argument("name", nargs="?", help="model: lenet5, alexnet, vgg16, resnet50, ...")
    ap.add_argument("--shapes", choices=sorted(CONV_SETS))
    ap.add_argument("--shape", action="append", help="N,C,H,W,K,R,S,stride,pad[,groups]")
    # No defaults here (None: not given), so that an option given to a mode it does not apply
    # to is found; the defaults (--mnk 1024,1024,1024, --batch 32) are set after that check.
    ap.add_argument("--mnk", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0: OMP_NUM_THREADS if set, else every core, as cnnbench)")
    ap.add_argument("--layers", action="store_true",
                    help="model: each layer alone too, as cnnbench --layers")
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
        ap.error("a mode is needed (%s; model takes a NAME)" % ", ".join(MODES))
    # cnnbench's rules: a NAME only after model, an option only in the modes it applies to, and
    # conv's --batch only with a set (each --shape gives its own N).
    if args.name and args.mode != "model":
        ap.error("unexpected argument '%s'" % args.name)
    given = {"--shape": args.shape is not None, "--shapes": args.shapes is not None,
             "--mnk": args.mnk is not None, "--layers": args.layers,
             "--img-size": args.img_size is not None, "--batch": args.batch is not None}
    for option, modes in APPLIES:
        if given[option] and args.mode not in modes:
            ap.error("%s does not apply to mode %s (only to %s)" % (option, args.mode,
                                                                   " ".join(modes)))
    if args.mode == "conv" and given["--batch"] and args.shape and not args.shapes:
        ap.error("--batch sets the batch of a shape set (--shapes); each --shape gives its own N")
    args.mnk = args.mnk if given["--mnk"] else [1024, 1024, 1024]
    args.batch = args.batch if given["--batch"] else 32
    args.img_size = args.img_size or 0
    if (args.iters < 1 or args.warmup < 0 or args.batch < 1 or len(args.mnk) != 3
            or min(args.mnk) < 1):
        ap.error("--iters and --batch must be >= 1, --warmup >= 0, --mnk M,N,K all positive")
    if args.mode == "conv":
        try:
            conv_shapes(args)
        except ValueError as e:  # cnnbench's refusal, with its exit status 2
            ap.error(str(e))
    if args.json:
        # Found before the timing, as cnnbench does, without creating or removing anything: the
        # file (or a link's target) must be writable, or its folder when it does not exist yet.
        target = os.path.realpath(args.json)
        folder = os.path.dirname(target) or "."
        if os.path.isdir(target):
            why = "it is a folder"
        elif os.path.exists(target):
            why = None if os.access(target, os.W_OK) else "permission denied"
        elif not os.path.isdir(folder):
            why = "no folder %s" % folder
        else:
            why = None if os.access(folder, os.W_OK | os.X_OK) else "permission denied"
        if why:
            print("torch_reference: cannot write %s: %s" % (args.json, why), file=sys.stderr)
            return 2
    try:
        import torch
    except ImportError:
        print("torch_reference: PyTorch is not installed (it needs torch and torchvision)",
              file=sys.stderr)
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_reference: no CUDA device (use --device cpu)", file=sys.stderr)
        return 1
    if args.device == "cpu":
        # torch's own default is the physical cores (1 on a 2-vCPU machine), cnnbench's every
        # core OpenMP sees: the same count on both sides, unless --threads says otherwise.
        omp = os.environ.get("OMP_NUM_THREADS", "")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count() or 1  # the CPUs this process may run on, as OpenMP counts them
        torch.set_num_threads(args.threads if args.threads > 0 else
                              int(omp) if omp.isdigit() and int(omp) > 0 else cores)
    torch.backends.cudnn.benchmark = True
    set_tf32(torch, args.tf32)
    torch.manual_seed(1)
    b = Bench(torch, args)
    dev = device_name(torch, args.device)
    cudnn = torch.backends.cudnn.version() if args.device == "cuda" else None
    print("torch %s on %s | %s | tf32 %s | %s, warmup %d, iters %d"
          % (torch.__version__, dev,
             "cuDNN %s, cudnn.benchmark on" % cudnn if cudnn else "%d CPU threads" % torch.get_num_threads(),
             args.tf32, "CUDA events" if args.device == "cuda" else "perf_counter",
             args.warmup, args.iters))
    fn = {"conv": bench_conv, "gemm": bench_gemm, "bn": bench_bn, "pool": bench_pool,
          "elementwise": bench_elementwise, "model": bench_model}[args.mode]
    # A run cut short by a time limit still writes what it finished.
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    complete = True
    try:
        fn(torch, b, args)
    except Stopped:
        complete = False
        print("torch_reference: stopped by a signal; %d result(s) completed%s"
              % (len(b.rows), ", written to the JSON file" if args.json else ""), file=sys.stderr)
    except (RuntimeError, ValueError) as e:  # what torch raises for a case it cannot run
        complete = False
        print("torch_reference: %s%s: %s" % (args.mode, " " + args.name if args.name else "",
                                             str(e).strip().splitlines()[0]), file=sys.stderr)
    # As cnnbench: conv shapes carry their own N (a --shape string its, a --shapes set --batch),
    # and the batch is theirs when they share one, else null (each row's shape says it).
    batch = args.batch
    if args.mode == "conv":
        ns = {t[1][0] for t in conv_shapes(args)}
        batch = ns.pop() if len(ns) == 1 else None
    doc = {"tool": "torch", "version": torch.__version__, "device": dev,
           "backend": "cudnn" if args.device == "cuda" else "cpu", "tf32": args.tf32,
           "cudnn_version": cudnn, "mode": args.mode, "batch": batch,
           "warmup": args.warmup, "iters": args.iters, "complete": complete,
           "threads": torch.get_num_threads(),
           "timing": "CUDA events" if args.device == "cuda" else "perf_counter",
           "results": b.rows}
    errs = schema_errors(doc)
    if errs:
        print("torch_reference: internal schema error: %s" % errs, file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
