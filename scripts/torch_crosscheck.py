#!/usr/bin/env python3
"""torch_crosscheck.py — writes PyTorch/torchvision reference data (inputs, weights, outputs,
gradients, optimizer states) as safetensors for tests/test_torch_parity.c and test_torch_zoo.c
to compare against.
Usage: torch_crosscheck.py CHECK OUTDIR [MODEL]. It only writes files; it judges nothing.
Needs torch and torchvision (Debian's 1.13 / 0.14 are enough); no `safetensors` package."""
import sys

import torch
import torch.nn.functional as F
from st_io import st_load, st_save

torch.set_num_threads(2)


def rnd(*shape):
    return torch.randn(shape, dtype=torch.float32)


def leaf(*shape):
    return rnd(*shape).requires_grad_(True)


# ---- zoo ---------------------------------------------------------------------------------
ZOO_SIZE = {"alexnet": 96}  # VGG: 32 (five 2x2 pools), ResNet: 64 (layer4 at 2x2)


def zoo_input_size(name):
    return ZOO_SIZE.get(name, 32 if name.startswith("vgg") else 64)


def zoo_build(name):
    import torchvision  # only the zoo checks need it (its import costs seconds)
    kw = {"num_classes": 10}
    if name == "alexnet" or name.startswith("vgg"):
        kw["dropout"] = 0.0  # training-mode forward must be deterministic on both sides
    return getattr(torchvision.models, name)(**kw)


def zoo_grad_names(name, m):
    keys = [k for k, p in m.named_parameters()]
    if name == "alexnet" or name.startswith("vgg"):
        return [keys[0], keys[1], keys[2], keys[-4], keys[-2], keys[-1]]
    return ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
            "layer4.0.downsample.0.weight", keys[-3], "fc.weight", "fc.bias"]


# Gradients in training mode only where float32 can compute them reproducibly. In the deeper
# BN nets, training-mode BN couples every value of a channel, so one pre-ReLU value within
# float32 rounding of 0 (ResNet-34 has one at -2e-6) flips the mask in one library and not the
# other and moves a whole channel's gradient by 10%; and at initialisation the gradients of
# ResNet-50/101/152 explode with depth (torch's own float32 is 25-60% off float64). Those
# models take the gradient of the eval-mode loss, where a flip stays local.
GRAD_IN_EVAL = ("vgg16_bn", "resnet34", "resnet50", "resnet101", "resnet152")


def zoo_run(m, x, y, name):
    """Eval logits, then training-mode logits, CE loss and the BN buffers after that step, then
    the gradients of the named parameters (of the training-mode loss, or of the eval-mode loss
    after that step for GRAD_IN_EVAL)."""
    res = {}
    m.eval()
    with torch.no_grad():
        res["logits_eval"] = m(x)
    m.train()
    logits = m(x)
    loss = F.cross_entropy(logits, y)
    res["logits_train"], res["loss"] = logits, loss
    for k, v in m.state_dict().items():
        if "running" in k or "num_batches" in k:
            res["after." + k] = v
    if name in GRAD_IN_EVAL:
        m.eval()
        loss = F.cross_entropy(m(x), y)
    loss.backward()
    params = dict(m.named_parameters())
    for k in zoo_grad_names(name, m):
        res["grad." + k] = params[k].grad
    return res


def check_zoo(out, name):
    """Both directions for one model, in one run (importing torch costs seconds):
    ours -> torchvision: loads the C side's ours.safetensors (strict) and writes torchvision's
    eval logits on its input.safetensors as "rev_logits";
    torchvision -> ours: a model with BN affine and running stats randomised ->
    weights.safetensors, its input, outputs, gradients and buffers -> ref.safetensors. For
    GRAD_IN_EVAL models the references come from the same model in float64, with "err.<name>"
    saying how far torch's own float32 run is from them."""
    m = zoo_build(name)
    m.load_state_dict(st_load(f"{out}/ours.safetensors"), strict=True)
    m.eval()
    with torch.no_grad():
        ref = {"rev_logits": m(st_load(f"{out}/input.safetensors")["x"])}
    torch.manual_seed(0)
    m = zoo_build(name)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                # Milder for the deep bottleneck nets: there the wide ranges make even eval-mode
                # gradients ill-conditioned in float32.
                mild = name in GRAD_IN_EVAL
                mod.weight.uniform_(0.8, 1.2) if mild else mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.1 if mild else 0.2)
                mod.running_mean.normal_(0.0, 0.1 if mild else 0.2)
                mod.running_var.uniform_(0.8, 1.25) if mild else mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(7)
    s = zoo_input_size(name)
    x, y = rnd(2, 3, s, s), torch.tensor([3, 7])
    if hasattr(m, "fc"):
        # Eval-mode ResNet logits reach 1e4 here (random running statistics do not normalise),
        # where a float32 rounding of the logits moves the softmax: scale them to about 5.
        m.eval()
        with torch.no_grad():
            scale = 5.0 / float(m(x).abs().max().clamp(min=1e-3))
            m.fc.weight.mul_(scale)
            m.fc.bias.mul_(scale)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    st_save(f"{out}/weights.safetensors", sd)
    ref.update({"x": x, "y": y, "grad_in_eval": torch.tensor([int(name in GRAD_IN_EVAL)])})
    r32 = zoo_run(m, x, y, name)
    if name not in GRAD_IN_EVAL:
        ref.update(r32)
    else:
        m64 = zoo_build(name)
        m64.load_state_dict(sd)
        for k, v in zoo_run(m64.double(), x.double(), y, name).items():
            ref[k] = v
            ref["err." + k] = (r32[k].double() - v.double()).abs().max()
    st_save(f"{out}/ref.safetensors", ref)


# ---- ops: each case i is "c<i>.<tensor>" plus an I64/F32 "c<i>.p" of its parameters ------
def grads(y, inputs, ref, prefix, names):
    dy = rnd(*y.shape)
    y.backward(dy)
    ref[prefix + "dy"] = dy
    ref[prefix + "y"] = y
    for n, t in zip(names, inputs):
        if t is not None:
            ref[prefix + "d" + n] = t.grad


def check_conv2d(out):
    torch.manual_seed(1)
    # (N, C, H, W, K, R, S, stride, pad, dil, groups, bias)
    cases = [(2, 3, 9, 11, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1),
             (2, 3, 10, 9, 5, 3, 2, (2, 1), (1, 2), (1, 1), 1, 0),
             (1, 4, 11, 12, 3, 3, 3, (1, 2), (2, 2), (2, 2), 1, 1),
             (2, 4, 8, 7, 6, 3, 3, (1, 1), (1, 0), (1, 1), 2, 1),
             (2, 6, 9, 9, 6, 3, 3, (2, 2), (1, 1), (1, 1), 6, 0),
             (1, 3, 7, 8, 6, 5, 5, (1, 1), (2, 2), (1, 1), 3, 1),
             (2, 8, 7, 7, 4, 1, 1, (2, 2), (0, 0), (1, 1), 1, 0),
             (1, 3, 15, 15, 8, 7, 7, (2, 2), (3, 3), (1, 1), 1, 0),
             # big enough (> 2e6 multiply-adds) for the multi-threaded CPU paths
             (2, 256, 4, 4, 256, 3, 3, (1, 1), (1, 1), (1, 1), 1, 0),
             (2, 128, 8, 8, 256, 3, 3, (2, 2), (1, 1), (1, 1), 1, 0),
             (2, 256, 8, 8, 128, 1, 1, (1, 1), (0, 0), (1, 1), 1, 1),
             (4, 64, 16, 16, 64, 3, 3, (1, 1), (1, 1), (1, 1), 2, 1)]
    ref = {}
    for i, (n, c, h, w, k, r, s, st, pd, dl, g, bias) in enumerate(cases):
        x, wt = leaf(n, c, h, w), leaf(k, c // g, r, s)
        b = leaf(k) if bias else None
        y = F.conv2d(x, wt, b, st, pd, dl, g)
        p = f"c{i}."
        ref[p + "p"] = torch.tensor([*st, *pd, *dl, g, bias])
        ref[p + "x"], ref[p + "w"] = x, wt
        if bias:
            ref[p + "b"] = b
        grads(y, [x, wt, b], ref, p, ["x", "w", "b"])
    st_save(f"{out}/ref.safetensors", ref)


def check_linear(out):
    torch.manual_seed(2)
    ref = {}
    for i, (n, fi, fo, bias) in enumerate([(5, 7, 4, 1), (3, 16, 9, 0), (1, 33, 2, 1)]):
        x, wt = leaf(n, fi), leaf(fo, fi)
        b = leaf(fo) if bias else None
        p = f"c{i}."
        ref[p + "p"] = torch.tensor([bias])
        ref[p + "x"], ref[p + "w"] = x, wt
        if bias:
            ref[p + "b"] = b
        grads(F.linear(x, wt, b), [x, wt, b], ref, p, ["x", "w", "b"])
    st_save(f"{out}/ref.safetensors", ref)


def check_batch_norm(out):
    """Cases: p = [training, affine, calls]; fp = [momentum, eps]. A case runs `calls` forwards
    on x (the running statistics update each time), the backward on the last one."""
    torch.manual_seed(3)
    cases = [((4, 3, 5, 6), 1, 1, 2, 0.1, 1e-5), ((6, 5), 1, 1, 1, 0.1, 1e-5),
             ((3, 4, 3, 2), 1, 0, 1, 0.3, 1e-3), ((4, 3, 5, 6), 0, 1, 1, 0.1, 1e-5),
             ((5, 4), 0, 0, 1, 0.1, 1e-5)]
    ref = {}
    for i, (shape, training, affine, calls, mom, eps) in enumerate(cases):
        c = shape[1]
        x = (rnd(*shape) * 2 + 0.5).requires_grad_(True)
        wt = (torch.rand(c) + 0.5).requires_grad_(True) if affine else None
        b = leaf(c) if affine else None
        rm, rv = rnd(c) * 0.3, torch.rand(c) + 0.5
        p = f"c{i}."
        ref[p + "p"] = torch.tensor([training, affine, calls])
        ref[p + "fp"] = torch.tensor([mom, eps])
        ref[p + "x"], ref[p + "rm0"], ref[p + "rv0"] = x, rm.clone(), rv.clone()
        if affine:
            ref[p + "w"], ref[p + "b"] = wt, b
        for _ in range(calls):
            y = F.batch_norm(x, rm, rv, wt, b, bool(training), mom, eps)
        ref[p + "rm"], ref[p + "rv"] = rm, rv
        grads(y, [x, wt, b], ref, p, ["x", "w", "b"])
    st_save(f"{out}/ref.safetensors", ref)


def check_pool(out):
    """p = [kind (0 max, 1 avg, 2 adaptive), kh, kw, sh, sw, ph, pw, dh, dw, ceil,
    count_include_pad, out_h, out_w]."""
    torch.manual_seed(4)
    cases = [((2, 3, 9, 9), 0, (3, 3), (2, 2), (1, 1), (1, 1), 0, 1, 0),
             ((1, 2, 7, 9), 0, (2, 2), (2, 2), (0, 0), (1, 1), 1, 1, 0),
             ((1, 2, 11, 10), 0, (3, 2), (2, 1), (1, 1), (2, 2), 0, 1, 0),
             ((1, 2, 8, 8), 0, (3, 3), (3, 3), (1, 1), (1, 1), 1, 1, 0),
             ((2, 3, 9, 8), 1, (3, 3), (2, 2), (1, 1), (1, 1), 0, 1, 0),
             ((2, 3, 9, 8), 1, (3, 3), (2, 2), (1, 1), (1, 1), 0, 0, 0),
             ((1, 2, 8, 8), 1, (3, 3), (2, 2), (1, 1), (1, 1), 1, 1, 0),
             ((1, 2, 8, 8), 1, (3, 3), (2, 2), (1, 1), (1, 1), 1, 0, 0),
             ((1, 2, 7, 9), 1, (2, 3), (2, 2), (0, 0), (1, 1), 1, 1, 0),
             # ceil_mode where the last window would start inside the right padding: dropped
             ((1, 2, 5, 5), 0, (2, 2), (3, 3), (1, 1), (1, 1), 1, 1, 0),
             ((1, 2, 5, 5), 1, (2, 2), (3, 3), (1, 1), (1, 1), 1, 1, 0),
             ((1, 2, 5, 5), 1, (2, 2), (3, 3), (1, 1), (1, 1), 1, 0, 0),
             ((1, 2, 9, 8), 0, (3, 3), (2, 2), (1, 1), (2, 2), 1, 1, 0),
             ((2, 2, 7, 9), 2, (3, 4)), ((1, 3, 5, 5), 2, (7, 7)), ((2, 3, 6, 5), 2, (1, 1)),
             ((1, 2, 10, 3), 2, (4, 2))]
    ref = {}
    for i, cs in enumerate(cases):
        x = leaf(*cs[0])
        kind = cs[1]
        p = f"c{i}."
        if kind == 2:
            y = F.adaptive_avg_pool2d(x, cs[2])
            ref[p + "p"] = torch.tensor([2] + [0] * 10 + list(cs[2]))
        else:
            k, s, pd, dl, ceil, cip = cs[2], cs[3], cs[4], cs[5], cs[6], cs[7]
            if kind == 0:
                y = F.max_pool2d(x, k, s, pd, dl, ceil_mode=bool(ceil))
            else:
                y = F.avg_pool2d(x, k, s, pd, ceil_mode=bool(ceil), count_include_pad=bool(cip))
            ref[p + "p"] = torch.tensor([kind, *k, *s, *pd, *dl, ceil, cip, 0, 0])
        ref[p + "x"] = x
        grads(y, [x], ref, p, ["x"])
    st_save(f"{out}/ref.safetensors", ref)


def check_lrn(out):
    torch.manual_seed(5)
    ref = {}
    # AlexNet's (size 5, alpha 1e-4, beta 0.75, k 2), then ones where the sum matters.
    for i, (size, alpha, beta, k) in enumerate([(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.75, 1.0),
                                                (4, 1.0, 0.5, 1.0), (2, 2.0, 1.0, 0.5)]):
        x = (rnd(2, 7, 4, 5) * 2).requires_grad_(True)
        p = f"c{i}."
        ref[p + "p"] = torch.tensor([size])
        ref[p + "fp"] = torch.tensor([alpha, beta, k])
        ref[p + "x"] = x
        grads(F.local_response_norm(x, size, alpha, beta, k), [x], ref, p, ["x"])
    st_save(f"{out}/ref.safetensors", ref)


def check_softmax(out):
    """Softmax / log-softmax (p = [log, dim]) and cross-entropy (fp = [label_smoothing])."""
    torch.manual_seed(6)
    ref = {}
    i = 0
    for shape, dim in [((4, 7), 1), ((4, 7), -1), ((3, 5), 0), ((2, 3, 4, 5), 1),
                       ((2, 3, 4, 5), -1)]:
        for log in (0, 1):
            x = (rnd(*shape) * 3).requires_grad_(True)
            p = f"s{i}."
            ref[p + "p"] = torch.tensor([log, dim])
            ref[p + "x"] = x
            y = F.log_softmax(x, dim) if log else F.softmax(x, dim)
            grads(y, [x], ref, p, ["x"])
            i += 1
    # The last case ignores two samples through PyTorch's default ignore_index, -100.
    cases = [(6, 5, 0.0), (6, 5, 0.1), (3, 10, 0.3), (1, 2, 0.0), (4, 3, 1.0), (6, 5, 0.2)]
    for i, (n, k, ls) in enumerate(cases):
        x = (rnd(n, k) * 4).requires_grad_(True)
        lab = torch.randint(0, k, (n,))
        if i == len(cases) - 1:
            lab[1] = lab[4] = -100
        p = f"ce{i}."
        ref[p + "fp"], ref[p + "x"], ref[p + "lab"] = torch.tensor([ls]), x, lab
        grads(F.cross_entropy(x, lab, label_smoothing=ls), [x], ref, p, ["x"])
    st_save(f"{out}/ref.safetensors", ref)


def check_activations(out):
    """p = [kind (0 relu, 1 tanh, 2 sigmoid, 3 leaky_relu, 4 elu, 5 dropout in eval)],
    fp = [parameter]."""
    torch.manual_seed(7)
    ref = {}
    fns = [(0, 0.0, F.relu), (1, 0.0, torch.tanh), (2, 0.0, torch.sigmoid),
           (3, 0.1, lambda x: F.leaky_relu(x, 0.1)), (4, 1.0, lambda x: F.elu(x, 1.0)),
           (4, 0.5, lambda x: F.elu(x, 0.5)), (5, 0.5, lambda x: F.dropout(x, 0.5, False))]
    for i, (kind, a, fn) in enumerate(fns):
        x = (rnd(3, 4, 5, 2) * 3).requires_grad_(True)
        p = f"c{i}."
        ref[p + "p"] = torch.tensor([kind])
        ref[p + "fp"] = torch.tensor([a])
        ref[p + "x"] = x
        grads(fn(x), [x], ref, p, ["x"])
    st_save(f"{out}/ref.safetensors", ref)


# ---- optimizers and schedules ------------------------------------------------------------
OPT_STEPS = 5


def check_optim(out):
    """fp = [kind (0 SGD, 1 Adam, 2 AdamW), lr, momentum, dampening, nesterov, weight_decay,
    beta1, beta2, eps]; gradients g<k>.<j> fed at step k; params after step k in <j>.step<k>."""
    torch.manual_seed(8)
    cases = [(0, 0.1, 0.0, 0.0, 0, 0.0, 0, 0, 0), (0, 0.1, 0.9, 0.0, 0, 0.0, 0, 0, 0),
             (0, 0.05, 0.9, 0.1, 0, 0.01, 0, 0, 0), (0, 0.05, 0.9, 0.0, 1, 0.01, 0, 0, 0),
             (1, 0.01, 0, 0, 0, 0.0, 0.9, 0.999, 1e-8), (1, 0.02, 0, 0, 0, 0.05, 0.8, 0.95, 1e-3),
             (2, 0.01, 0, 0, 0, 0.01, 0.9, 0.999, 1e-8), (2, 0.03, 0, 0, 0, 0.2, 0.85, 0.99, 1e-6)]
    ref = {}
    shapes = [(3, 4), (4,)]
    for i, (kind, lr, mom, damp, nest, wd, b1, b2, eps) in enumerate(cases):
        params = [torch.nn.Parameter(rnd(*s)) for s in shapes]
        p = f"c{i}."
        ref[p + "fp"] = torch.tensor([kind, lr, mom, damp, nest, wd, b1, b2, eps])
        for j, q in enumerate(params):
            ref[p + f"{j}.init"] = q.detach().clone()
        if kind == 0:
            opt = torch.optim.SGD(params, lr, mom, damp, wd, bool(nest))
        elif kind == 1:
            opt = torch.optim.Adam(params, lr, (b1, b2), eps, wd)
        else:
            opt = torch.optim.AdamW(params, lr, (b1, b2), eps, wd)
        for k in range(OPT_STEPS):
            for j, q in enumerate(params):
                q.grad = rnd(*q.shape)
                ref[p + f"g{k}.{j}"] = q.grad.clone()
            opt.step()
            for j, q in enumerate(params):
                ref[p + f"{j}.step{k}"] = q.detach().clone()
    st_save(f"{out}/ref.safetensors", ref)


def sched_lrs(make, n):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s = make(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return torch.tensor(lrs, dtype=torch.float64)


def check_sched(out):
    """LR per epoch t = 0..n-1 from torch's schedulers (base lr 0.1): step, multistep, cosine,
    warmup + cosine (LinearLR + CosineAnnealingLR in a SequentialLR), ReduceLROnPlateau."""
    import warnings
    warnings.simplefilter("ignore")
    S = torch.optim.lr_scheduler
    ref = {"step": sched_lrs(lambda o: S.StepLR(o, 3, 0.5), 12),
           "multistep": sched_lrs(lambda o: S.MultiStepLR(o, [5, 2, 6], 0.3), 10),
           "cosine": sched_lrs(lambda o: S.CosineAnnealingLR(o, 10, 0.01), 10),
           "warmcos": sched_lrs(lambda o: S.SequentialLR(
               o, [S.LinearLR(o, 1 / 4, 1.0, 3), S.CosineAnnealingLR(o, 8, 0.001)], [4]), 12)}
    metrics = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    pl = S.ReduceLROnPlateau(opt, "min", 0.5, 2, threshold=1e-2, cooldown=1, min_lr=0.02)
    lrs = []
    for v in metrics:
        pl.step(v)
        lrs.append(opt.param_groups[0]["lr"])
    ref["plateau.metric"] = torch.tensor(metrics)
    ref["plateau"] = torch.tensor(lrs)
    st_save(f"{out}/ref.safetensors", ref)


def check_clip(out):
    torch.manual_seed(9)
    ref = {}
    for i, max_norm in enumerate([1.0, 100.0, 0.01]):
        params = [torch.nn.Parameter(rnd(*s)) for s in [(3, 4), (5,), (2, 2, 3)]]
        for j, q in enumerate(params):
            q.grad = rnd(*q.shape)
            ref[f"c{i}.g{j}"] = q.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        ref[f"c{i}.max_norm"] = torch.tensor([max_norm])
        ref[f"c{i}.total"] = total.reshape(1)
        for j, q in enumerate(params):
            ref[f"c{i}.clipped{j}"] = q.grad
    st_save(f"{out}/ref.safetensors", ref)


def check_dtype(out):
    """x: F32 values (random at every scale, the half formats' edges and ties, specials) with
    torch's x.half() and x.bfloat16() as x16 / xb16; h16 / hb16: every 16-bit code of each
    format, with torch's .float() of them as h16f / hb16f; d: F64 values, with torch's
    .float(), .half() and .bfloat16() of them as d32 / d16 / db16."""
    torch.manual_seed(11)
    r = torch.randn(20000) * torch.pow(2.0, torch.randint(-40, 40, (20000,)).float())
    bits = torch.randint(-2**31, 2**31 - 1, (20000,), dtype=torch.int64).to(torch.int32)
    edges = torch.tensor([65504.0, 65519.99, 65520.0, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25,
                          2.0**-14, -0.0, 0.0, float("inf"), float("-inf"), float("nan"),
                          1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8, 3.4e38, 1e-40])
    x = torch.cat([r, bits.view(torch.float32), edges])
    codes = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    h16, hb16 = codes.view(torch.float16), codes.view(torch.bfloat16)
    d = torch.cat([torch.randn(20000, dtype=torch.float64) *
                   torch.pow(2.0, torch.randint(-60, 60, (20000,)).double()),
                   x.double() * (1 + 2.0**-30), x.double() * (1 - 2.0**-40),
                   torch.tensor([1e300, -1e-300, 1.0 + 2.0**-11 + 2.0**-30], dtype=torch.float64)])
    st_save(f"{out}/ref.safetensors", {"x": x, "x16": x.half(), "xb16": x.bfloat16(),
                                        "h16": h16, "h16f": h16.float(), "hb16": hb16,
                                        "hb16f": hb16.float(), "d": d, "d32": d.float(),
                                        "d16": d.half(), "db16": d.bfloat16()}, f64=True)


CHECKS = {"conv2d": check_conv2d, "linear": check_linear, "batch_norm": check_batch_norm,
          "pool": check_pool, "lrn": check_lrn, "softmax": check_softmax,
          "activations": check_activations, "optim": check_optim, "sched": check_sched,
          "clip": check_clip, "dtype": check_dtype}

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: torch_crosscheck.py CHECK OUTDIR [MODEL]  (CHECK: zoo, "
                 + ", ".join(CHECKS) + ")")
    check, outdir = sys.argv[1], sys.argv[2]
    if check == "zoo":
        check_zoo(outdir, sys.argv[3])
    else:
        CHECKS[check](outdir)
