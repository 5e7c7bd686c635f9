# Copies kernels/*.cu, *.cuh into OUT/src with the launches and dynamic shared memory rewritten for emu_cuda.h.
# Usage: patch.py REPO_KERNELS_DIR OUT_DIR
import re, os, glob, sys
src, out = sys.argv[1], sys.argv[2]
dst = os.path.join(out, 'src')
os.makedirs(dst, exist_ok=True)
# Kernels without block collectives (no __syncthreads, shuffles): their threads run as plain calls, much faster.
DIRECT = {'bias_act_kernel', 'broadcast_rows_kernel', 'silu_mul_kernel', 'add_kernel', 'scale_kernel',
          'embedding_kernel', 'add_positions_kernel', 'convert_kernel', 'convert_rows_kernel', 'fill_kernel',
          'add_sample_kernel', 'apply_kernel', 'kv_pack_kernel', 'kv_unpack_kernel', 'dequantize_kernel',
          'range_fill_kernel'}

def write_if_changed(path, text):
    if os.path.exists(path) and open(path).read() == text:
        return
    open(path, 'w').write(text)

for f in glob.glob(src + '/*.cuh'):
    s = open(f).read()
    s = s.replace('#ifndef __CUDACC__\n#error', '#if 0\n#error')
    write_if_changed(os.path.join(dst, os.path.basename(f)), s)
for f in glob.glob(src + '/*.cu'):
    s = open(f).read()
    def launch(m):
        name = m.group(1)
        base = name.split('<')[0]
        fibers = 'false' if base in DIRECT else 'true'
        return 'EMU_LAUNCH(%s, %s, %s, ' % (fibers, name, m.group(2))
    s, n = re.subn(r'(\b\w+(?:<[^<>;()]*>)?)<<<(.*?)>>>\(', launch, s)
    s = re.sub(r'extern __shared__ float (\w+)\[\];', r'float* \1 = static_cast<float*>(emu::dynamic_shared());', s)
    # A function template instantiation as a macro argument needs parentheses when it holds commas: none here.
    write_if_changed(os.path.join(dst, os.path.basename(f)[:-3] + '.cpp'), s)
