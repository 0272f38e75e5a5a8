#!/usr/bin/env python3
"""gen_image_folder.py — writes a synthetic ImageNet-layout JPEG folder OUT/{train,val}/<class>/*.jpg
for loader and training-throughput runs on a machine without a dataset: photo-like sizes (about
500x375, varied), smooth content (low-frequency colour fields, blurred shapes) with mild grain
so the files are about the size of real photos, and a class signal (hue and stripe direction)
a network can learn. Deterministic for a given --seed. Needs numpy and Pillow; writes only
under OUT.

  python3 scripts/gen_image_folder.py OUT --classes 10 --train 500 --val 50 --procs 16
"""
import argparse
import math
import os
import sys
import time
from multiprocessing import Pool


def make_image(job):
    """Writes one JPEG; returns its size in bytes."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    path, cls, n_classes, idx, seed, size, quality = job
    rng = np.random.default_rng([seed, cls, idx])
    w0, h0 = size
    # Real photo folders mix sizes and orientations around the nominal one.
    w = int(w0 * rng.uniform(0.8, 1.2))
    h = int(h0 * rng.uniform(0.8, 1.2))
    if rng.random() < 0.2:
        w, h = h, w
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    hue = 2 * math.pi * cls / n_classes
    base = np.array([math.cos(hue), math.cos(hue - 2.1), math.cos(hue + 2.1)]) * 60 + 128
    angle = math.pi * cls / n_classes + rng.normal(0, 0.15)
    u = (x * math.cos(angle) + y * math.sin(angle)) / max(w, h)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        f1, f2 = rng.uniform(2, 6), rng.uniform(0.5, 2.5)
        ph = rng.uniform(0, 2 * math.pi, 2)
        img[..., c] = (base[c] + 45 * np.sin(2 * math.pi * f1 * u + ph[0])
                       + 30 * np.sin(2 * math.pi * f2 * (y / h) + ph[1]))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.05, 0.25) * min(w, h)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse([cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r], fill=col)
    im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.5, 4))))
    # Mild grain: real photos carry sensor noise and texture, which JPEG has to encode.
    a = np.asarray(im, np.float32) + 7 * rng.standard_normal((h, w, 3), dtype=np.float32)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return os.path.getsize(path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train", type=int, default=500, help="images per class in train/")
    ap.add_argument("--val", type=int, default=50, help="images per class in val/")
    ap.add_argument("--size", default="500x375", help="nominal WxH (each image varies +-20%%)")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        if len(size) != 2 or min(size) < 8:
            raise ValueError
    except ValueError:
        ap.error("--size wants WxH, e.g. 500x375")
    if args.classes < 1 or args.train < 1 or args.val < 0 or not 1 <= args.quality <= 100:
        ap.error("--classes and --train must be >= 1, --val >= 0, --quality in 1..100")
    jobs = []
    for split, n in (("train", args.train), ("val", args.val)):
        for c in range(args.classes):
            d = os.path.join(args.out, split, "class%02d" % c)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                # val draws differ from train: another stream of the same generator
                idx = i if split == "train" else 1000000 + i
                jobs.append((os.path.join(d, "%05d.jpg" % i), c, args.classes, idx, args.seed,
                             size, args.quality))
    t0 = time.time()
    with Pool(max(1, args.procs)) as pool:
        sizes = pool.map(make_image, jobs, chunksize=8)
    dt = time.time() - t0
    print("wrote %d JPEGs (%d classes, %d train + %d val each, ~%dx%d) to %s in %.1f s; "
          "mean file %.1f KB, total %.1f MB"
          % (len(jobs), args.classes, args.train, args.val, size[0], size[1], args.out, dt,
             sum(sizes) / len(sizes) / 1024, sum(sizes) / 2 ** 20))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
