// oneDNN's C API (Debian libdnnl-dev), for the bf16 products of the frozen base (TensorCore/BF16Matmul.swift).
#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>

// Debian's oneDNN runs on OpenMP (DNNL_CPU_RUNTIME = OMP in dnnl_config.h), whose thread count is omp_set_num_threads
// of the libgomp that libdnnl loads. Looked up at run time: libgomp ships no unversioned libgomp.so to link against
// outside gcc's own directory. Returns 0 when no OpenMP runtime is loaded.
static inline int llmprune_omp_set_num_threads(int n) {
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!set) return 0;
    set(n);
    return 1;
}
