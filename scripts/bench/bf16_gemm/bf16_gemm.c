// bf16 × bf16 → fp32 products with a frozen weight, against OpenBLAS sgemm (issue 16 item 3).
//
//   bf16_gemm THREADS [REPS] [M,...]      (token counts; default 512,2048)
//
// For each token count M and each weight W (N×K, PyTorch Linear layout out×in) of SmolLM2-135M it times
//   fwd: Y[M×N]  = X[M×K]  · Wᵀ      (forward of a frozen linear)
//   bwd: dX[M×K] = dY[M×N] · W       (input gradient through the same frozen weight)
// with
//   sgemm      OpenBLAS cblas_sgemm, fp32 (the product today)
//   sbgemm     OpenBLAS cblas_sbgemm, bf16 in / fp32 out, looked up with dlsym (Debian may not export it)
//   dnnl-f32   oneDNN matmul f32, weights reordered once into the layout the primitive asks for
//   dnnl-bf16  oneDNN matmul bf16×bf16→f32, weights converted + reordered once (frozen base); "kern" times the
//              matmul alone on an already-bf16 activation, "+cvt" adds the fp32→bf16 reorder of the activation
//              that the product would pay every call (activations stay fp32 there)
// Each timing is the best of REPS runs after one warm-up. Each result is checked against an fp32 reference
// (sgemm, itself checked on sampled entries against a double-precision dot): err = max|y-ref| / max|ref|.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

#define CHECK(call) do { dnnl_status_t s_ = (call); if (s_ != dnnl_success) { \
    fprintf(stderr, "%s:%d: %s -> %d\n", __FILE__, __LINE__, #call, (int)s_); exit(2); } } while (0)

typedef void (*sbgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
                          float, const uint16_t *, blasint, const uint16_t *, blasint, float, float *, blasint);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static uint16_t f2bf(float f) {  // round to nearest even, as oneDNN's reorder and torch do
    uint32_t u; memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void fill(float *a, size_t n, uint32_t seed) {
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; a[i] = ((s >> 8) * (1.0f / 16777216.0f)) * 2.0f - 1.0f; }
}

static double relerr(const float *y, const float *ref, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)y[i] - ref[i]); if (d > e || d != d) e = (d != d) ? INFINITY : d;
        double r = fabs(ref[i]); if (r > m) m = r;
    }
    return e / m;
}

static dnnl_engine_t eng; static dnnl_stream_t strm;

// A oneDNN matmul C[M×N] = A[M×K] · B[K×N] with A row-major, B given as fp32 with the strides of `btag`
// (ab: B row-major; ba: B stored as N×K row-major, i.e. Wᵀ), reordered once into the primitive's layout.
typedef struct {
    dnnl_primitive_t mm, a_cvt;           // a_cvt: fp32 activation -> bf16 (NULL for f32)
    dnnl_memory_t a32, a, b, c;
    char impl[128];
} dmm;

static void dmm_init(dmm *d, int M, int N, int K, dnnl_data_type_t dt, const float *A, const float *B,
                     dnnl_format_tag_t btag, float *C) {
    memset(d, 0, sizeof *d);
    dnnl_memory_desc_t a_md, b_md, c_md, a32_md, b32_md;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    CHECK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dt, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dt, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&a32_md, 2, ad, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&b32_md, 2, bd, dnnl_f32, btag));
    dnnl_matmul_desc_t md; CHECK(dnnl_matmul_desc_init(&md, &a_md, &b_md, NULL, &c_md));
    dnnl_primitive_desc_t pd; CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *impl = NULL; CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(d->impl, sizeof d->impl, "%s", impl);
    const dnnl_memory_desc_t *bq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    CHECK(dnnl_primitive_create(&d->mm, pd));
    // weights: fp32 user layout -> packed (bf16 or f32), once
    dnnl_memory_t b32; CHECK(dnnl_memory_create(&b32, &b32_md, eng, (void *)B));
    CHECK(dnnl_memory_create(&d->b, bq, eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd; CHECK(dnnl_reorder_primitive_desc_create(&rpd, &b32_md, eng, bq, eng, NULL));
    dnnl_primitive_t r; CHECK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, b32}, {DNNL_ARG_TO, d->b}};
    CHECK(dnnl_primitive_execute(r, strm, 2, rargs)); CHECK(dnnl_stream_wait(strm));
    dnnl_primitive_destroy(r); dnnl_primitive_desc_destroy(rpd); dnnl_memory_destroy(b32);
    CHECK(dnnl_memory_create(&d->a32, &a32_md, eng, (void *)A));
    CHECK(dnnl_memory_create(&d->c, &c_md, eng, C));
    if (dt == dnnl_f32) { d->a = d->a32; }
    else {
        CHECK(dnnl_memory_create(&d->a, &a_md, eng, DNNL_MEMORY_ALLOCATE));
        dnnl_primitive_desc_t apd; CHECK(dnnl_reorder_primitive_desc_create(&apd, &a32_md, eng, &a_md, eng, NULL));
        CHECK(dnnl_primitive_create(&d->a_cvt, apd)); dnnl_primitive_desc_destroy(apd);
    }
    dnnl_primitive_desc_destroy(pd);
}
static void dmm_cvt(dmm *d) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, d->a32}, {DNNL_ARG_TO, d->a}};
    CHECK(dnnl_primitive_execute(d->a_cvt, strm, 2, args)); CHECK(dnnl_stream_wait(strm));
}
static void dmm_run(dmm *d) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a}, {DNNL_ARG_WEIGHTS, d->b}, {DNNL_ARG_DST, d->c}};
    CHECK(dnnl_primitive_execute(d->mm, strm, 3, args)); CHECK(dnnl_stream_wait(strm));
}
static void dmm_free(dmm *d) {
    dnnl_primitive_destroy(d->mm); dnnl_memory_destroy(d->b); dnnl_memory_destroy(d->c);
    if (d->a_cvt) { dnnl_primitive_destroy(d->a_cvt); dnnl_memory_destroy(d->a); }
    dnnl_memory_destroy(d->a32);
}

static int REPS = 5;
#define BEST(stmt) ({ stmt; double b_ = 1e30; for (int r_ = 0; r_ < REPS; r_++) { double t0_ = now(); stmt; \
    double t_ = now() - t0_; if (t_ < b_) b_ = t_; } b_; })

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2) REPS = atoi(argv[2]);
    int Ms[8] = {512, 2048}, nM = 2;
    if (argc > 3) { nM = 0; for (char *t = strtok(argv[3], ","); t && nM < 8; t = strtok(NULL, ",")) Ms[nM++] = atoi(t); }
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    sbgemm_fn sbgemm = (sbgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    const dnnl_version_t *v = dnnl_version();
    printf("# threads=%d reps=%d (best of)\n# openblas: %s | core %s | cblas_sbgemm %s\n", threads, REPS,
           openblas_get_config(), openblas_get_corename(), sbgemm ? "exported" : "NOT exported");
    printf("# onednn %d.%d.%d cpu_runtime=%d effective isa=0x%x\n", v->major, v->minor, v->patch, v->cpu_runtime,
           (unsigned)dnnl_get_effective_cpu_isa());
    printf("%-4s %5s %5s %5s %-9s %9s %9s %6s %9s %6s %9s %6s %9s %6s %9s  %s\n", "dir", "M", "N", "K", "weight",
           "sgemm", "dnnl-f32", "x", "bf16kern", "x", "bf16+cvt", "x", "sbgemm", "x", "maxerr", "impl(bf16)");
    const struct { int n, k; const char *name; } Ws[] = {
        {576, 576, "q/o"}, {192, 576, "k/v"}, {1536, 576, "gate/up"}, {576, 1536, "down"}, {49152, 576, "lm_head"}};
    for (int mi = 0; mi < nM; mi++) for (int wi = 0; wi < 5; wi++) for (int dir = 0; dir < 2; dir++) {
        int M = Ms[mi], N = Ws[wi].n, K = Ws[wi].k;
        // fwd: C[M×Nc] = A[M×Kc]·B[Kc×Nc] with Kc=K, Nc=N, B = Wᵀ.  bwd: Kc=N, Nc=K, B = W.
        int Kc = dir == 0 ? K : N, Nc = dir == 0 ? N : K;
        float *W = malloc(sizeof(float) * (size_t)N * K), *A = malloc(sizeof(float) * (size_t)M * Kc);
        float *ref = malloc(sizeof(float) * (size_t)M * Nc), *C = malloc(sizeof(float) * (size_t)M * Nc);
        fill(W, (size_t)N * K, 7 + wi); fill(A, (size_t)M * Kc, 11 + mi * 5 + wi);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] *= 0.05f;  // weight-like scale
        enum CBLAS_TRANSPOSE tb = dir == 0 ? CblasTrans : CblasNoTrans;
        double ts = BEST(cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, Nc, Kc, 1.0f, A, Kc, W, dir == 0 ? K : K,
                                     0.0f, ref, Nc));
        // the reference itself, on 512 sampled entries, against a double dot product
        double serr = 0, smax = 0;
        for (int s = 0; s < 512; s++) {
            size_t i = ((size_t)s * 2654435761u) % M, j = ((size_t)s * 40503u + 17) % Nc; double acc = 0;
            for (int k = 0; k < Kc; k++) acc += (double)A[i * Kc + k] * (dir == 0 ? W[j * K + k] : W[(size_t)k * K + j]);
            double d = fabs(acc - ref[i * Nc + j]); if (d > serr) serr = d; if (fabs(acc) > smax) smax = fabs(acc);
        }
        if (serr / smax > 1e-5) { fprintf(stderr, "sgemm reference off: %g\n", serr / smax); return 3; }
        double flop = 2.0 * M * Nc * Kc;
        dmm d32, d16;
        dmm_init(&d32, M, Nc, Kc, dnnl_f32, A, W, dir == 0 ? dnnl_ba : dnnl_ab, C);
        double tf = BEST(dmm_run(&d32)); double ef = relerr(C, ref, (size_t)M * Nc); dmm_free(&d32);
        dmm_init(&d16, M, Nc, Kc, dnnl_bf16, A, W, dir == 0 ? dnnl_ba : dnnl_ab, C);
        dmm_cvt(&d16);
        double tk = BEST(dmm_run(&d16)); double ek = relerr(C, ref, (size_t)M * Nc);
        double tc = BEST((dmm_cvt(&d16), dmm_run(&d16)));
        char impl[128]; snprintf(impl, sizeof impl, "%s", d16.impl); dmm_free(&d16);
        double tsb = 0, esb = 0;
        if (sbgemm) {
            uint16_t *Wb = malloc(2 * (size_t)N * K), *Ab = malloc(2 * (size_t)M * Kc);
            for (size_t i = 0; i < (size_t)N * K; i++) Wb[i] = f2bf(W[i]);
            for (size_t i = 0; i < (size_t)M * Kc; i++) Ab[i] = f2bf(A[i]);
            memset(C, 0, sizeof(float) * (size_t)M * Nc);
            tsb = BEST(sbgemm(CblasRowMajor, CblasNoTrans, tb, M, Nc, Kc, 1.0f, Ab, Kc, Wb, K, 0.0f, C, Nc));
            esb = relerr(C, ref, (size_t)M * Nc); free(Wb); free(Ab);
        }
        double g = 1e-9 * flop;
        char sbs[32] = "absent", sbx[16] = "-";
        if (sbgemm) { snprintf(sbs, sizeof sbs, "%.1f", g / tsb); snprintf(sbx, sizeof sbx, "%.2f", ts / tsb); }
        double emax = fmax(ek, sbgemm ? esb : 0);
        printf("%-4s %5d %5d %5d %-9s %9.1f %9.1f %6.2f %9.1f %6.2f %9.1f %6.2f %9s %6s %9.2e  %s%s\n",
               dir == 0 ? "fwd" : "bwd", M, Nc, Kc, Ws[wi].name, g / ts, g / tf, ts / tf, g / tk, ts / tk, g / tc,
               ts / tc, sbs, sbx, emax, impl, ef > 1e-5 ? "  [dnnl-f32 err!]" : "");
        if (ek > 3e-2 || (sbgemm && esb > 3e-2)) { fprintf(stderr, "bf16 result off: dnnl %g sbgemm %g\n", ek, esb); return 4; }
        fflush(stdout);
        free(W); free(A); free(ref); free(C);
    }
    return 0;
}
