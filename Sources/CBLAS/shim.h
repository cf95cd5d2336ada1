#include <cblas.h>
// LAPACK's Cholesky factorisation and solve, which Debian's libopenblas exports (f77blas.h declares the same;
// blasint is int in this 32-bit-integer build). Used by the least-squares reconstruction (TensorCore/Gram.swift).
int dpotrf_(char *uplo, int *n, double *a, int *lda, int *info);
int dpotrs_(char *uplo, int *n, int *nrhs, double *a, int *lda, double *b, int *ldb, int *info);
