#!/usr/bin/env python3
"""torchvision_weights.py — saves a torchvision model's weights as safetensors under its
state_dict keys, which are the library's names: the file loads with cnn_model_load (same
classes) or cnn_model_load_pretrained / `train_imagenet_subset --pretrained FILE` (fine-tuning to
other classes, or to gray input). Needs torch and torchvision; pretrained weights are
downloaded by torchvision into its cache the first time (network access needed then).

  python3 scripts/torchvision_weights.py resnet50 resnet50.safetensors            # DEFAULT weights
  python3 scripts/torchvision_weights.py vgg16_bn vgg16_bn.safetensors --weights IMAGENET1K_V1
  python3 scripts/torchvision_weights.py resnet18 r18.safetensors --weights none  # random init

MODEL is a torchvision classification model the zoo also has: alexnet, vgg11..vgg19 and their
_bn variants, resnet18, resnet34, resnet50, resnet101, resnet152."""
import argparse
import os
import sys

import torch
import torchvision

from st_io import st_save

ZOO = ["alexnet"] + [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")] + \
      [f"resnet{d}" for d in (18, 34, 50, 101, 152)]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="torchvision model name: " + ", ".join(ZOO))
    p.add_argument("out", help="the .safetensors file to write")
    p.add_argument("--weights", default="DEFAULT",
                   help="DEFAULT (torchvision's best), a weights name such as IMAGENET1K_V1, or "
                        "none (random initialisation, seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="with --weights none")
    a = p.parse_args(argv)
    if a.model not in ZOO:
        p.error(f"unknown model '{a.model}' (one of: {', '.join(ZOO)})")
    torch.manual_seed(a.seed)
    weights = None if a.weights.lower() == "none" else a.weights
    try:
        m = torchvision.models.get_model(a.model, weights=weights)
    except Exception as e:  # an unknown weights name, or no network for the download
        sys.exit(f"torchvision_weights: {a.model} with weights {a.weights}: {e}")
    sd = m.state_dict()
    tmp = a.out + ".tmp"
    st_save(tmp, sd, {"model": a.model, "weights": a.weights, "source": "torchvision " +
                      torchvision.__version__})
    os.replace(tmp, a.out)
    n = sum(t.numel() for k, t in sd.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {a.out}: {a.model} ({a.weights}), {len(sd)} tensors, {n:,} values")


if __name__ == "__main__":
    main(sys.argv[1:])
