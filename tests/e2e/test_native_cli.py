"""
test_native_cli.py — `record -n` and `dump -n` through the real command:
time in C shows the C function directly under the Python line that called
it (a small C extension's spin(), zlib's compressor), per interpreter.
"""
import re

from conftest import marker_lines, read_collapsed, run_pyrometer, target_path, total_samples
from test_native import ext_dir  # noqa: F401  (fixture: native_ext built per interpreter)


def _split(line):
    stack, count = line.rstrip("\n").rsplit(" ", 1)
    return stack.split(";"), int(count)


def test_record_native_spin(python, spawn, ext_dir, tmp_path):  # noqa: F811
    target = spawn(python, "native_calls.py", "--mode", "spin", "--ext-dir", ext_dir)
    call_line = marker_lines(target_path("native_calls.py"))["call_c_spin"]
    out = str(tmp_path / "n.txt")
    run_pyrometer(["record", "-n", "-f", "raw", "-r", 200, "-d", 2, "-o", out,
                   "-p", target.pid]).expect(0)
    total = under = 0
    with open(out, encoding="utf-8") as f:
        for line in f:
            frames, count = _split(line)
            total += count
            for caller, callee in zip(frames, frames[1:]):
                if caller == "call_c (native_calls.py:%d)" % call_line and \
                        re.match(r"spin \(native_ext[^)]*\)$", callee):
                    under += count
                    break
    assert total >= 200, total
    assert under / total >= 0.8, "spin under call_c in %d of %d samples" % (under, total)


def test_record_and_dump_native_zlib(python, spawn, tmp_path):
    target = spawn(python, "native_calls.py", "--mode", "zlib")
    call_line = marker_lines(target_path("native_calls.py"))["compress_call"]
    out = str(tmp_path / "z.txt")
    run_pyrometer(["record", "-n", "-f", "raw", "-r", 200, "-d", 2, "-o", out,
                   "-p", target.pid]).expect(0)
    caller = "compress_data (native_calls.py:%d)" % call_line
    total = native_under = 0
    with open(out, encoding="utf-8") as f:
        for line in f:
            frames, count = _split(line)
            total += count
            if caller in frames and frames.index(caller) + 1 < len(frames):
                callee = frames[frames.index(caller) + 1]
                # zlib's module function (stripped on Debian: libz's deflate directly)
                if re.match(r"(zlib_compress|PyZlib_compress|deflate\w*|\[unknown\]) \(", callee):
                    native_under += count
    assert native_under / total >= 0.8, (native_under, total)
    # dump -n shows the same shape, innermost first
    res = run_pyrometer(["dump", "-n", "-p", target.pid]).expect(0)
    lines = [l.strip() for l in res.stdout.splitlines() if l.startswith("    ")]
    assert caller in lines, res.stdout
    inner = lines[:lines.index(caller)]
    # everything above the Python caller is C (no "file.py:LINE" label)
    assert inner and not any(re.search(r"\.py:\d+\)$", l) for l in inner), inner
