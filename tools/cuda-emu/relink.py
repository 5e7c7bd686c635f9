# Relinks test binaries of a CMake/Ninja build against the emulator: the link command ninja would run, with
# librptq_kernels.a replaced by libemu.a and the CUDA runtime / cuBLAS libraries dropped.
# Usage: relink.py BUILD_DIR EMU_OUT_DIR TARGET...
# A TARGET without a folder is looked up in tests/, then bench/, then app/ (test_cuda_model, bench_cuda, ...).
# Beyond the kernels library, a target may carry CUDA of its own:
#   - its own .cu sources (e.g. a benchmark's kernel): each object nvcc made is replaced by the source patched as
#     patch.py patches kernels/ and compiled with g++ against emu_cuda.h, as build.sh compiles the kernels;
#   - libraries beyond the runtime and cuBLAS: libemu.a also carries emu_cublaslt.cpp (the cuBLASLt calls
#     bench_cuda makes), linked in only where a target calls them.
import json, os, re, shutil, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.abspath(os.path.join(here, '..', '..'))
build, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
cuda_include = os.environ.get('CUDA_INCLUDE', '/usr/local/cuda/include')
FLAGS = ['-std=c++17', '-O2', '-g', '-fno-omit-frame-pointer', '-Wno-attributes', '-Wno-unknown-pragmas',
         '-isystem', cuda_include]
os.makedirs(os.path.join(out, 'bin'), exist_ok=True)


def known_target(t):
    return subprocess.run(['ninja', '-t', 'query', t], cwd=build, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def resolve(t):
    if '/' in t:
        return t
    for folder in ('tests', 'bench', 'app'):
        if known_target(folder + '/' + t):
            return folder + '/' + t
    return 'tests/' + t  # ninja then names the unknown target


def stale(obj, *sources):
    return not os.path.exists(obj) or any(os.path.getmtime(s) > os.path.getmtime(obj) for s in sources)


def compile_cpp(src, obj, extra):
    os.makedirs(os.path.dirname(obj), exist_ok=True)
    r = subprocess.run(['g++'] + FLAGS + extra + ['-c', src, '-o', obj])
    if r.returncode:
        sys.exit(r.returncode)
    return obj


compile_db = None


def cuda_source_of(obj):
    """The .cu file ninja compiles into obj (a path relative to the build folder), from compile_commands.json."""
    global compile_db
    if compile_db is None:
        path = os.path.join(build, 'compile_commands.json')
        compile_db = {}
        if os.path.exists(path):
            for e in json.load(open(path)):
                o = e.get('output')
                if o:
                    compile_db[os.path.normpath(o)] = os.path.join(e.get('directory', build), e['file'])
    src = compile_db.get(os.path.normpath(obj))
    if src is None:  # CMake names objects FOLDER/CMakeFiles/TARGET.dir/SOURCE.cu.o
        m = re.match(r'(.*)/CMakeFiles/[^/]+\.dir/(.+\.cu)\.o$', obj)
        if not m:
            sys.exit('relink.py: cannot tell which .cu file %s comes from' % obj)
        src = os.path.join(repo, m.group(1), m.group(2))
    return os.path.abspath(src)


def emulated_cuda_object(target, obj):
    """obj's .cu source patched for the emulator and compiled with g++; returns the new object's path."""
    src = cuda_source_of(obj)
    tdir = os.path.join(out, 'targets', target.replace('/', '_'))
    stem = os.path.splitext(os.path.basename(src))[0]
    staging = os.path.join(tdir, 'cu', stem)
    os.makedirs(staging, exist_ok=True)
    shutil.copy2(src, os.path.join(staging, os.path.basename(src)))
    subprocess.check_call([sys.executable, os.path.join(here, 'patch.py'), staging, tdir])
    patched = os.path.join(tdir, 'src', stem + '.cpp')
    o = os.path.join(tdir, 'obj', stem + '.o')
    if stale(o, patched, os.path.join(here, 'emu_cuda.h')):
        compile_cpp(patched, o, ['-include', os.path.join(here, 'emu_cuda.h'), '-I' + os.path.join(out, 'src'),
                                 '-I' + os.path.dirname(src), '-I' + os.path.join(repo, 'kernels')])
    return o


for t in sys.argv[3:]:
    target = resolve(t)
    cmd = subprocess.check_output(['ninja', '-t', 'commands', target], cwd=build, text=True).strip().splitlines()[-1]
    cmd = cmd.split('&&')[1] if cmd.startswith(':') else cmd.split('&&')[0]
    parts = []
    for p in cmd.split():
        if p == 'kernels/librptq_kernels.a':
            parts.append(os.path.join(out, 'libemu.a'))
            continue
        if re.search(r'libcudart|libcublas|libculibos|-lcudadevrt|-lcudart', p):
            continue
        if p.endswith('.cu.o'):
            parts.append(emulated_cuda_object(target, p))
            continue
        parts.append(p)
    i = parts.index('-o')
    parts[i + 1] = os.path.join(out, 'bin', os.path.basename(target))
    r = subprocess.run(' '.join(parts), shell=True, cwd=build)
    if r.returncode:
        sys.exit(r.returncode)
