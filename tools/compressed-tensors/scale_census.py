#!/usr/bin/env python3
"""What storing a compressed-tensors export's weight scales in F16 or BF16 would do, read from an export made with
F32 scales (`rptq export --format compressed-tensors --scale-dtype f32`):

    scale_census.py FOLDER

Prints, over every weight_scale: the count, min and max; how many F16 would flush to zero (< 2^-25), store as
subnormals with fewer significant bits (< 2^-14), or change at all; and how many BF16 would change, with the
largest relative change of each. Needs numpy and safetensors.
"""
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    state = load_file(os.path.join(sys.argv[1], "model.safetensors"))
    scales = np.concatenate([v.astype(np.float32).ravel() for k, v in sorted(state.items())
                             if k.endswith(".weight_scale")])
    if scales.size == 0:
        raise SystemExit("no weight_scale tensors")
    f16 = scales.astype(np.float16).astype(np.float32)
    bits = scales.view(np.uint32)
    bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    rel = lambda a: np.max(np.abs(a - scales) / scales)
    print(f"scales {scales.size}, min {scales.min():.3e}, max {scales.max():.3e}")
    print(f"F16: flushed to 0 (< 2^-25): {int(np.sum(f16 == 0))}; subnormal (< 2^-14 = 6.1e-5): "
          f"{int(np.sum(scales < 2.0 ** -14))}; changed: {int(np.sum(f16 != scales))}; "
          f"largest relative change of a non-flushed scale: {rel(np.where(f16 == 0, scales, f16)):.3e}")
    print(f"BF16: changed: {int(np.sum(bf16 != scales))}; largest relative change: {rel(bf16):.3e}")


if __name__ == "__main__":
    main()
