"""cffi API-mode (out-of-line) build of every C module in csrc/ into one extension.

Each header declares its public API between the markers ``/* cdef-begin */`` and
``/* cdef-end */``; only that part goes to ``ffi.cdef`` because cffi cannot parse
preprocessor lines or include guards.  Adding a module means adding a ``.c``/``.h``
pair here: nothing else to register.
"""
import pathlib
import re

from cffi import FFI

CSRC = pathlib.Path(__file__).resolve().parent
CDEF_BLOCK = re.compile(r"/\* cdef-begin \*/(.*?)/\* cdef-end \*/", re.S)

headers = sorted(CSRC.glob("*.h"))
sources = sorted(CSRC.glob("*.c"))

ffibuilder = FFI()
ffibuilder.cdef("\n".join(block for h in headers for block in CDEF_BLOCK.findall(h.read_text())))
ffibuilder.set_source(
    "earwitness._native",
    "\n".join(f'#include "{h.name}"' for h in headers),
    sources=[str(s.relative_to(CSRC.parent)) for s in sources],
    include_dirs=[str(CSRC.relative_to(CSRC.parent))],
    extra_compile_args=["-std=c99", "-O2", "-Wall", "-Wextra"],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
