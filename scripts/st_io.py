"""st_io.py — safetensors files from Python without the `safetensors` package, for the scripts
that trade tensors with the library (torch_crosscheck.py, torchvision_weights.py): the format is
an 8-byte little-endian header length, a JSON header, then the raw data. F32 and I64, the two
dtypes the library's models hold, and the formats F16, BF16 and F64 it converts from."""
import json
import struct

import numpy as np
import torch


HALF = {torch.float16: "F16", torch.bfloat16: "BF16"}


def st_save(path, tensors, meta=None, f64=False):
    """Writes {name: tensor} (integers as I64, float16 and bfloat16 as F16 and BF16, float64 as
    F64 when f64 is set, the rest as F32) and string metadata."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = torch.as_tensor(t).detach().cpu().contiguous()
        if t.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool):
            a, dt = t.to(torch.int64).numpy(), "I64"
        elif t.dtype in HALF:
            a, dt = t.view(torch.int16).numpy(), HALF[t.dtype]
        elif f64 and t.dtype == torch.float64:
            a, dt = t.numpy(), "F64"
        else:
            a, dt = t.to(torch.float32).numpy(), "F32"
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_load(path):
    """Reads an F32/I64/F16/BF16/F64 safetensors file -> {name: tensor}."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "I64": np.int64, "F16": np.int16, "BF16": np.int16,
              "F64": np.float64}[v["dtype"]]
        s, e = v["data_offsets"]
        t = torch.from_numpy(np.frombuffer(data[s:e], dtype=dt).copy()).reshape(v["shape"])
        half = {d: k for k, d in HALF.items()}.get(v["dtype"])
        out[name] = t.view(half) if half else t
    return out
