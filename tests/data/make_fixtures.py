#!/usr/bin/python3
"""Regenerates the PyTorch checkpoint fixtures used by tests/io/test_checkpoint*.cpp and tests/io/test_hostile_inputs.cpp.

Run from anywhere with a Python that has torch (Debian: apt-get install python3-torch):
    /usr/bin/python3 tests/data/make_fixtures.py
It rewrites tests/data/torch/*.bin. Every tensor value is a fixed function of its index (no random numbers), so the
files come out the same on every run with the same torch version (written with torch 1.13, Debian's python3-torch),
except legacy.bin, whose pre-1.6 format embeds Python object ids as storage keys; only its header matters to the
tests. The malicious archives are built by hand (the
pickles are written byte by byte and never unpickled here); loading them with torch.load would run their payload.
"""
import collections
import io
import os
import struct
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch")


def save(name, obj, **kw):
    # torch.save names the archive's top folder after the file; keep a fixed name for reproducibility.
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    assert os.path.getsize(path) < 50_000, name


def ramp(n, dtype, scale=0.25, offset=0.0):
    return (torch.arange(n, dtype=torch.float64) * scale + offset).to(dtype)


def basic():
    # One tensor of every dtype the loader maps, plus a 0-dim and an empty tensor.
    sd = collections.OrderedDict()
    sd["f32"] = ramp(12, torch.float32, 0.5, -1.0).reshape(3, 4)
    sd["f16"] = ramp(6, torch.float16, 0.25, 1.0).reshape(2, 3)
    sd["bf16"] = ramp(8, torch.bfloat16, -0.5, 2.0).reshape(2, 2, 2)
    sd["f64"] = ramp(3, torch.float64, 1.0 / 3.0)
    sd["i64"] = torch.tensor([1, -2, 3, 1 << 40], dtype=torch.int64)
    sd["i32"] = torch.tensor([-7, 8], dtype=torch.int32)
    sd["i16"] = torch.tensor([300, -300, 5], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    save("basic.bin", sd)


def parameters():
    # nn.Parameter pickles through torch._utils._rebuild_parameter.
    sd = collections.OrderedDict()
    sd["weight"] = torch.nn.Parameter(ramp(6, torch.float32, 1.0).reshape(2, 3))
    sd["bias"] = torch.nn.Parameter(ramp(2, torch.float32, -1.0), requires_grad=False)
    save("parameter.bin", sd)


def module_state():
    # Module.state_dict() carries a `_metadata` attribute, pickled as a BUILD on the OrderedDict.
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        for i, p in enumerate(m.parameters()):
            p.copy_(ramp(p.numel(), torch.float32, 0.125, float(i)).reshape(p.shape))
    save("module_state.bin", m.state_dict())


def protocol4():
    # Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL.
    sd = {"a.weight": ramp(4, torch.float16, 0.5).reshape(2, 2),
          "a.bias": torch.nn.Parameter(ramp(2, torch.float32, 2.0))}
    save("protocol4.bin", sd, pickle_protocol=4)


def noncontiguous():
    save("noncontiguous.bin", {"t": ramp(6, torch.float32).reshape(2, 3).t()})


def shared_storage():
    # Views into one storage at different offsets: one zip entry, three tensors.
    base = ramp(10, torch.float32, 1.0)
    save("shared_storage.bin", collections.OrderedDict(
        [("full", base), ("middle", base[2:6]), ("tail", base[6:10].view(2, 2))]))


def legacy():
    # The pre-1.6 format: pickles back to back, not a zip.
    save("legacy.bin", {"x": ramp(3, torch.float32)}, _use_new_zipfile_serialization=False)


def shards():
    # Two halves of one state dict, for sharded-.bin tests (the test writes the index).
    save("shard-00001-of-00002.bin", collections.OrderedDict(
        [("layer.0.weight", ramp(4, torch.float32, 1.0).reshape(2, 2)), ("layer.0.bias", ramp(2, torch.float32))]))
    save("shard-00002-of-00002.bin", collections.OrderedDict(
        [("layer.1.weight", ramp(4, torch.float32, -1.0).reshape(2, 2)), ("layer.1.bias", ramp(2, torch.float16))]))


# ---- hand-written hostile pickles ----

def u(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def write_zip(name, pickle_bytes, extra_entries=()):
    # The same layout torch.save writes: archive/data.pkl, archive/data/<key>, archive/version; all STORED.
    path = os.path.join(OUT, name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for entry, data in [("archive/data.pkl", pickle_bytes), *extra_entries, ("archive/version", b"3\n")]:
            info = zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)


CMD = "touch /tmp/pwned-rptq"


def evil():
    # posix.system("touch ...") through GLOBAL + REDUCE, the way pickle spells os.system on Linux.
    write_zip("evil_posix_system.bin", b"\x80\x02cposix\nsystem\n" + u(CMD) + b"\x85R.")
    write_zip("evil_os_system.bin", b"\x80\x02cos\nsystem\n" + u(CMD) + b"\x85R.")
    # builtins.eval of an expression that would import os.
    write_zip("evil_eval.bin", b"\x80\x02cbuiltins\neval\n" + u("__import__('os').system('%s')" % CMD) + b"\x85R.")
    # Protocol 4 STACK_GLOBAL spelling of subprocess.call, hidden as the value of a state-dict entry.
    p4 = (b"\x80\x04}(" + b"\x8c\x01w" + b"\x8c\nsubprocess\x8c\x04call\x93" +
          b"]" + u("touch") + b"a" + u("/tmp/pwned-rptq") + b"a\x85R" + b"u.")
    write_zip("evil_stack_global.bin", p4)
    # A real-looking state dict whose second entry calls os.system: the refusal must come before any call.
    t = (b"ctorch._utils\n_rebuild_tensor_v2\n((" + u("storage") + b"ctorch\nFloatStorage\n" + u("0") + u("cpu") +
         b"K\x02tQK\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR")
    mixed = (b"\x80\x02ccollections\nOrderedDict\n)R(" + u("w") + t + u("x") + b"cos\nsystem\n" + u(CMD) +
             b"\x85Ru.")
    write_zip("evil_mixed.bin", mixed, [("archive/data/0", struct.pack("<2f", 1.0, 2.0))])
    # torch.storage._load_from_bytes runs torch.load on embedded bytes: a real torch global, still refused.
    write_zip("evil_load_from_bytes.bin",
              b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x04abcd\x85R.")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    basic()
    parameters()
    module_state()
    protocol4()
    noncontiguous()
    shared_storage()
    legacy()
    shards()
    evil()
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
