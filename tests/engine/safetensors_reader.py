#!/usr/bin/env python3
"""safetensors_reader.py: an independent safetensors reader and writer for Lumen's tests.

Written from the specification (https://huggingface.co/docs/safetensors, "Format") with json and
numpy only: the `safetensors` package is not installed on our machines, and a reader that shares
no code with the engine's (engine/src/io_safetensors.c) is what makes a round trip a real check.

The rules checked when reading (each violation raises FormatError):
  - the file starts with an 8-byte little-endian u64 N, and 8 + N <= the file size;
  - the N header bytes are UTF-8 JSON that starts with '{' and may end with spaces (padding);
    the value is an object without duplicate keys;
  - "__metadata__", when present, maps strings to strings;
  - every other key names a tensor: {"dtype": D, "shape": [non-negative ints],
    "data_offsets": [BEGIN, END]} with BEGIN <= END, END - BEGIN == prod(shape) * size(D), and
    D one of the dtypes in DTYPES;
  - the tensors tile the byte buffer after the header exactly: sorted by offsets, the first
    begins at 0, each begins where the previous ends, the last ends at the end of the file.

Command line (the C and Lua tests parse this output, so its form is stable):

  python3 safetensors_reader.py FILE
      Prints one line of JSON, keys sorted, then exits 0:
        {"header_len": N,                       # the u64 at the start of the file
         "metadata": {KEY: VALUE, ...},         # {} when the file has none
         "order": [NAME, ...],                  # tensor names in header order
         "tensors": {NAME: {"data_offsets": [BEGIN, END], "dtype": "F32",
                            "first": [up to 8 leading elements in C order],
                            "max": M, "min": M,  # absent for an empty tensor
                            "numel": K, "shape": [...], "sum": S}}}
      Integer dtypes give integers (sum exact up to the int64 range); float dtypes give floats
      (sum accumulated in float64), with non-finite values as the strings "nan", "inf", "-inf".
      Names and strings are printed with json.dumps's default escaping (non-ASCII as \\uXXXX).
      A file that breaks a rule prints "safetensors_reader: FILE: MESSAGE" on stderr, exit 1.

As a module: read(path) -> (header_len, order, {name: numpy array}, metadata) and
write(path, tensors, metadata=None, align=8), where tensors is an ordered {name: array}; write
pads the header with spaces so the data starts at a multiple of align (1: no padding).
"""

import json
import math
import struct
import sys

import numpy as np

# safetensors dtype -> (numpy dtype, bytes per element). BF16 has no numpy dtype: it is read
# as its 16 bits and widened to float32.
DTYPES = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U64": ("<u8", 8), "U32": ("<u4", 4), "U16": ("<u2", 2), "U8": ("u1", 1),
    "BOOL": ("?", 1),
}
NUMPY_TO_DTYPE = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64",
                  "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64",
                  "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}
METADATA = "__metadata__"


class FormatError(ValueError):
    """The file does not follow the safetensors format."""


def _no_duplicates(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise FormatError("duplicate key %r in the header" % k)
        seen.add(k)
    return dict(pairs)


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _parse(path):
    """Reads and checks a file: (header_len, {name: entry} in header order, {name: array},
    metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError("%d bytes is too short for the 8-byte header length" % len(data))
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise FormatError("header length %d is beyond the end of the file (%d bytes)"
                          % (n, len(data)))
    raw = data[8:8 + n]
    if not raw.startswith(b"{") or not raw.rstrip(b" ").endswith(b"}"):
        raise FormatError("the header must be '{...}' followed only by spaces")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("the header is not UTF-8: %s" % e) from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise FormatError("bad JSON header: %s" % e) from None
    if not isinstance(header, dict):
        raise FormatError("the header is not a JSON object")

    metadata = header.pop(METADATA, {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError("__metadata__ must map strings to strings")

    buffer = data[8 + n:]
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise FormatError("tensor %r: entry is not an object" % name)
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            raise FormatError("tensor %r: unknown dtype %r" % (name, dtype))
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise FormatError("tensor %r: shape must be a list of non-negative integers" % name)
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_uint(o) for o in offs)
                and offs[0] <= offs[1]):
            raise FormatError("tensor %r: data_offsets must be [BEGIN, END], BEGIN <= END" % name)
        need = math.prod(shape) * DTYPES[dtype][1]
        if offs[1] - offs[0] != need:
            raise FormatError("tensor %r: data_offsets %r span %d bytes, shape %r %s needs %d"
                              % (name, offs, offs[1] - offs[0], shape, dtype, need))
        spans.append((offs[0], offs[1], name))

    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise FormatError("tensor %r begins at %d, expected %d (%s)"
                              % (name, begin, at, "overlap" if begin < at else "hole"))
        at = end
    if at != len(buffer):
        raise FormatError("the tensors cover %d bytes of a %d-byte buffer" % (at, len(buffer)))

    tensors = {}
    for name, info in header.items():
        np_dtype, _ = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        a = np.frombuffer(buffer[begin:end], dtype=np_dtype).reshape(info["shape"])
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a
    return n, header, tensors, metadata


def read(path):
    """Reads and checks a safetensors file: (header_len, order, tensors, metadata)."""
    n, header, tensors, metadata = _parse(path)
    return n, list(header.keys()), tensors, metadata


def write(path, tensors, metadata=None, align=8):
    """Writes an ordered {name: array} (C order) and optional {str: str} metadata."""
    header, blobs, at = {}, [], 0
    if metadata:
        header[METADATA] = dict(metadata)
    for name, a in tensors.items():
        a = np.asarray(a)
        dtype = NUMPY_TO_DTYPE[a.dtype.name]
        blob = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % align)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _number(v, is_float):
    if not is_float:
        return int(v)
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def summary(path):
    """The CLI's dump as a Python value (see the module docstring)."""
    n, header, tensors, metadata = _parse(path)
    out = {}
    for name, info in header.items():
        a = tensors[name]
        is_float = a.dtype.kind == "f"
        flat = a.reshape(-1)
        entry = {"dtype": info["dtype"], "shape": list(a.shape), "numel": int(a.size),
                 "data_offsets": info["data_offsets"],
                 "first": [_number(v, is_float) for v in flat[:8]],
                 "sum": _number(flat.astype(np.float64).sum() if is_float
                                else flat.astype(np.int64).sum(), is_float)}
        if a.size:
            entry["min"] = _number(flat.min(), is_float)
            entry["max"] = _number(flat.max(), is_float)
        out[name] = entry
    return {"header_len": n, "order": list(header.keys()), "tensors": out, "metadata": metadata}


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: safetensors_reader.py FILE", file=sys.stderr)
        return 2
    try:
        print(json.dumps(summary(argv[1]), sort_keys=True))
    except (FormatError, OSError) as e:
        print("safetensors_reader: %s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
