#!/usr/bin/env python3
"""layout — writes LAYOUT.md, the map of the source tree: every file of the project's folders
with the first sentence of its header comment, so the map says what each file says of itself.
`--check` compares LAYOUT.md with what it would write and exits 1 naming the files that
differ (a file added, removed or re-described without `make layout`)."""
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# The folders, bottom floor first (as ../shared/DESIGN.md orders them), with their role.
FOLDERS = [
    (".", "the build and the documents"),
    ("include", "the public header, split by area under include/cnncuda/"),
    ("include/cnncuda", "the parts of the public header"),
    ("core", "tensors, contexts, autograd, errors, RNG, checkpoints, optimizers: no op's math"),
    ("layers", "one file per op family: checks, forward, backward, CPU kernels, backend choice"),
    ("cuda", "the GPU side: hand-written kernels, cuDNN and cuBLAS calls, runtime, allocator"),
    ("models", "the zoo, composed of layers, with torchvision's parameter names"),
    ("data", "datasets, decoding, augmentation and the threaded loader"),
    ("tools", "the programs: the only code that prints freely or exits"),
    ("tools/common", "what the two tools share"),
    ("bench", "PyTorch's side of the benchmarks, and the comparison"),
    ("examples", "a program that links the installed library"),
    ("scripts", "dependencies, the GPU session, fuzzing, PyTorch reference data"),
    ("tests", "the suite (tests/run_tests), its helpers and shared cases"),
    ("tests/cuda_emu", "the CPU emulator of the CUDA runtime, kernels, cuBLAS and cuDNN"),
    ("tests/cuda_emu/include", "the emulator's stand-ins for the CUDA headers"),
    ("tests/fuzz", "libFuzzer targets for the file readers"),
    ("tests/fault", "allocation and file-system failures injected one at a time (make check-alloc-failures, check-io-failures)"),
]
# Tracked folders the map leaves out on purpose: CI's script, whose comment says what it runs.
UNMAPPED = {".ci"}

HEADER = """# The source tree, file by file

Each file begins with a comment saying what it is for; this map lists every file (but CI's
script, .ci/run) with that comment's first sentence. The folders and how they depend on each
other are described in DESIGN.md (the shared design document); this map is generated from the
files themselves by `make layout`, and `make check-layout` (run by CI) fails when it is out of
date.
"""

# A header comment: /* name — text */ or /* name (note) — text */ (C, CUDA), """name — text""" (Python), or the first
# comment lines after a shebang (# name — text) in shell and Perl.
C_HEAD = re.compile(r"/\*\s*\S+(?:\s+\([^)]*\))?\s+—\s+(.*?)\*/", re.S)
PY_HEAD = re.compile(r'"""\s*\S+\s+—\s+(.*?)"""', re.S)
SH_HEAD = re.compile(r"^(?:#!.*\n)?((?:#.*\n)+)")


def header_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(4000)
    name = os.path.basename(path)
    if name.endswith(".md"):  # the title's text after " — ", else the first paragraph
        lines = text.splitlines()
        title = next((i for i, l in enumerate(lines) if l.startswith("# ")), None)
        if title is None:
            return None
        if " — " in lines[title]:
            return lines[title].split(" — ", 1)[1]
        para = []
        for l in lines[title + 1:]:
            if l.strip():
                para.append(l)
            elif para:
                break
        return " ".join(para) or None
    for pat in (C_HEAD, PY_HEAD):
        m = pat.search(text)
        if m and m.start() < 200:
            return m.group(1)
    m = SH_HEAD.match(text)
    if m:
        body = re.sub(r"^#\s?", "", m.group(1), flags=re.M)
        m2 = re.match(r"\s*\S+\s+—\s+(.*)", body, re.S)
        if m2:
            return m2.group(1)
    return None


def first_sentence(text):
    # A blank comment line ends a paragraph, and the first sentence with it.
    text = re.split(r"\n\s*\*?\s*\n", text)[0]
    flat = re.sub(r"\s*\n\s*\*?\s*", " ", text).strip()
    return re.split(r"(?<=\.)\s+(?=[A-Z])", flat)[0].rstrip()


def tracked():
    """The files git tracks (so a build output or an editor's file never enters the map), or
    None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(out.splitlines())


def render():
    out, missing = [HEADER], []
    git = tracked()
    for folder, role in FOLDERS:
        d = os.path.join(ROOT, folder)
        files = sorted(f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)) and
                       not f.startswith(".") and
                       (git is None or os.path.normpath(f"{folder}/{f}") in git))
        out.append(f"\n## {'the top level' if folder == '.' else folder + '/'} — {role}\n\n")
        for f in files:
            text = header_text(os.path.join(d, f))
            if not text:
                missing.append(os.path.normpath(f"{folder}/{f}"))
                continue
            out.append(f"- `{f}` — {first_sentence(text)}\n")
    # A tracked folder that is not in FOLDERS would be left off the map without a word.
    mapped = {os.path.normpath(f) for f, _ in FOLDERS} | UNMAPPED
    for path in sorted(git or ()):
        folder = os.path.dirname(path) or "."
        if folder not in mapped:
            missing.append(f"{path} (its folder {folder}/ is not in scripts/layout.py's FOLDERS)")
            mapped.add(folder)
    return "".join(out), missing


def main():
    text, missing = render()
    if missing:
        print("layout: not mapped (no header comment 'name — what it is for', or a folder the "
              "map does not list): " + ", ".join(missing), file=sys.stderr)
        return 1
    target = os.path.join(ROOT, "LAYOUT.md")
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        try:
            with open(target, encoding="utf-8") as f:
                have = f.read()
        except OSError as e:
            print(f"layout: cannot read LAYOUT.md ({e}); run `make layout`", file=sys.stderr)
            return 1
        if have == text:
            print("check-layout: LAYOUT.md lists every file as its header describes it")
            return 0
        old, new = set(have.splitlines()), set(text.splitlines())
        for line in sorted(new - old):
            print(f"layout: missing or changed: {line[:100]}", file=sys.stderr)
        for line in sorted(old - new):
            print(f"layout: stale: {line[:100]}", file=sys.stderr)
        print("layout: LAYOUT.md is out of date; run `make layout`", file=sys.stderr)
        return 1
    with open(target + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(target + ".tmp", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
