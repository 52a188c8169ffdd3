#!/usr/bin/env python3
"""Rewrites the library's CUDA sources (cuda/*.cu, cuda/*.cuh; not cuda/runtime.cu) into host C++
for the CPU emulator (include/cuda_runtime.h). The real cuda/ files are never modified.

    python3 preprocess.py REPO_ROOT OUT_DIR

Rewrites, and nothing else (line numbers are kept, and a #line directive names the original
file, so compiler messages, ASan reports and the emulator's __syncthreads / shuffle call sites
point at cuda/FILE:LINE):
  * kernel<<<grid, block[, smem[, stream]]>>>(args)
        -> EMU_LAUNCH("kernel", (grid), (block), (smem), (stream), kernel(args))
    (the header turns that into a call of emu::launch running kernel(args) as every thread).
  * __shared__ [__align__(n)] T name[..]...;
        -> EMU_SHARED_POISON([__align__(n)] T name[..]..., name);
    (a function-static array, filled with 0xFF bytes = NaN at the start of every block).
  * Emulation knobs (each pattern must occur exactly once, or the script fails): the grid caps
    kMaxBlocks (common.cuh) and the transpose's grid.y cap (bias.cu) become runtime variables
    emu::g_max_blocks / emu::g_max_grid_y, so the harness can shrink them and make every
    grid-stride loop take several turns on small inputs; fits_int32 (common.cuh) answers false
    while emu::g_force_int64 is set, so the int64-index kernel instantiations run too; sgemm's
    kMinSliceK becomes emu::g_min_slice_k, so split-K runs on short (cheap to emulate) K.
What it cannot do: launches whose kernel expression is not an identifier with optional template
arguments, or __shared__ declarations of several names in one statement (it fails loudly).
"""
import pathlib
import re
import sys

KNOBS = {
    "common.cuh": [("constexpr int64_t kMaxBlocks = 65535;",
                    "inline const int64_t& kMaxBlocks = ::emu::g_max_blocks;  // emulator knob"),
                   ("inline bool fits_int32(std::initializer_list<int64_t> extents) {",
                    "inline bool fits_int32(std::initializer_list<int64_t> extents) {"
                    " if (::emu::g_force_int64) return false;  // emulator knob")],
    "bias.cu": [("std::min<int64_t>(tiles_a, 65535)",
                 "std::min<int64_t>(tiles_a, ::emu::g_max_grid_y)")],
    "sgemm.cu": [("constexpr int64_t kMinSliceK = 256;",
                  "inline const int64_t& kMinSliceK = ::emu::g_min_slice_k;  // emulator knob")],
}


def fail(msg):
    sys.exit(f"preprocess.py: {msg}")


def split_top_level(text):
    """Splits on commas outside (), [], {} (the launch configuration has no templates)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def kernel_start(src, end):
    """Start of the kernel expression `name` or `name<...>` ending just before src[end]."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if src[i - 1] == ">":  # template arguments: match < > backwards
        depth = 0
        while True:
            i -= 1
            if src[i] == ">":
                depth += 1
            elif src[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in "_:"):
        i -= 1
    return i


def matching_paren(src, i):
    assert src[i] == "("
    depth = 0
    for j in range(i, len(src)):
        if src[j] == "(":
            depth += 1
        elif src[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    fail("unbalanced parentheses after a launch")


def rewrite_launches(src, name):
    out, pos, count = [], 0, 0
    while True:
        lt = src.find("<<<", pos)
        if lt < 0:
            break
        line_start = src.rfind("\n", 0, lt) + 1
        if "//" in src[line_start:lt]:  # in a comment (check.cuh shows the syntax)
            out.append(src[pos:lt + 3])
            pos = lt + 3
            continue
        gt = src.find(">>>", lt)
        start = kernel_start(src, lt)
        kernel = src[start:lt].strip()
        if not re.fullmatch(r"[A-Za-z_][\w:]*(<[^;{}]*>)?", kernel):
            fail(f"{name}: cannot parse the kernel expression before <<< ({kernel!r})")
        cfg = split_top_level(src[lt + 3:gt])
        if not 2 <= len(cfg) <= 4:
            fail(f"{name}: launch configuration {cfg!r}")
        cfg += ["0", "nullptr"][len(cfg) - 2:]
        p = gt + 3
        while src[p].isspace() or src[p] == "\\":
            p += 1
        close = matching_paren(src, p)
        args = src[p:close + 1]
        label = re.sub(r"\s+", " ", kernel).replace('"', "'")
        conf = ", ".join(f"({c})" for c in cfg)
        out.append(src[pos:start])
        # Whitespace (newlines, macro continuations) around <<<...>>> moves between the kernel
        # and its arguments, so every line keeps its number.
        gap = src[start + len(src[start:lt].rstrip()):lt] + src[gt + 3:p]
        out.append(f'EMU_LAUNCH("{label}", {conf}, {kernel}{gap}{args})')
        pos = close + 1
        count += 1
    out.append(src[pos:])
    return "".join(out), count


SHARED = re.compile(r"__shared__\s+((?:__align__\(\d+\)\s+)?[\w:]+\s+(\w+)\s*(?:\[[^\]]+\]\s*)+);")


def rewrite_shared(src, name):
    new, count = SHARED.subn(lambda m: f"EMU_SHARED_POISON({m.group(1)}, {m.group(2)});", src)
    if "__shared__" in re.sub(r"//.*", "", new):
        fail(f"{name}: a __shared__ declaration this script does not understand")
    return new, count


def main():
    root, out_dir = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in (root / "cuda").iterdir()
                   if p.suffix in (".cu", ".cuh") and p.name != "runtime.cu")
    for path in files:
        src = path.read_text()
        for old, new in KNOBS.get(path.name, []):
            if src.count(old) != 1:
                fail(f"{path.name}: knob pattern {old!r} found {src.count(old)} times")
            src = src.replace(old, new)
        src, launches = rewrite_launches(src, path.name)
        src, shared = rewrite_shared(src, path.name)
        suffix = ".cpp" if path.suffix == ".cu" else ".cuh"
        target = out_dir / (path.stem + suffix)
        text = f'#line 1 "{path}"\n{src}'
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        print(f"  {path.name}: {launches} launches, {shared} __shared__ arrays")


if __name__ == "__main__":
    main()
