# Relinks test binaries of a CMake/Ninja build against the emulator: the link command ninja would run, with
# librptq_kernels.a replaced by libemu.a and the CUDA runtime / cuBLAS libraries dropped.
# Usage: relink.py BUILD_DIR EMU_OUT_DIR TARGET...
import os, re, subprocess, sys
build, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
os.makedirs(os.path.join(out, 'bin'), exist_ok=True)
for t in sys.argv[3:]:
    target = t if '/' in t else 'tests/' + t
    cmd = subprocess.check_output(['ninja', '-t', 'commands', target], cwd=build, text=True).strip().splitlines()[-1]
    cmd = cmd.split('&&')[1] if cmd.startswith(':') else cmd.split('&&')[0]
    parts = []
    for p in cmd.split():
        if p == 'kernels/librptq_kernels.a':
            parts.append(os.path.join(out, 'libemu.a'))
            continue
        if re.search(r'libcudart|libcublas|libculibos|-lcudadevrt|-lcudart', p):
            continue
        parts.append(p)
    i = parts.index('-o')
    parts[i + 1] = os.path.join(out, 'bin', os.path.basename(target))
    r = subprocess.run(' '.join(parts), shell=True, cwd=build)
    if r.returncode:
        sys.exit(r.returncode)
