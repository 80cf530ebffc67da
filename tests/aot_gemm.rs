//! The libraries' C GEMM (`kiln_gemm_f32`/`_f64` in `codegen/src/aot/kiln_rt.c`), on its own:
//! compiled as a library compiles it (`-O3 -march=native`), over shapes that cut every
//! register tile and cache block (rows not a multiple of the tile's, depths across the
//! `KC` block, columns across a vector and the `NC` block), through every way of reading the
//! operands (A's rows in place or packed, B's panels in place or packed, transposed strides,
//! a row stride of C wider than its columns, accumulation into C).
//!
//! Each product is checked against a `double` sum, and, bit for bit, against the same product
//! with A given transposed (so it is packed): the tile sums every element in the same order
//! whichever way A is read.

mod common;

use std::process::Command;

use common::scratch::Scratch;

/// The C test program: `#include`s the runtime and prints one line per failure, then `done N`
/// with the number of products checked.
const PROGRAM: &str = r#"
#include "kiln_rt.c"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long long state = 88172645463325252ull;
static double next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* One product three ways (A in place, A transposed, B transposed) into C with `pad` extra
 * columns per row; 1 when any check fails, after printing it. */
#define CHECK(T, SUFFIX, EPS)                                                                    \
    static int check_##SUFFIX(int64_t m, int64_t n, int64_t k, int accumulate, int64_t pad,     \
                              void *scratch) {                                                  \
        int64_t crs = n + pad;                                                                  \
        size_t an = (size_t)(m * k + 1), bn = (size_t)(k * n + 1), cn = (size_t)(m * crs + 1);  \
        T *a = malloc(sizeof(T) * an), *at = malloc(sizeof(T) * an);                            \
        T *b = malloc(sizeof(T) * bn), *bt = malloc(sizeof(T) * bn);                            \
        T *c0 = malloc(sizeof(T) * cn), *c[3];                                                  \
        for (int w = 0; w < 3; w++) c[w] = malloc(sizeof(T) * cn);                              \
        for (int64_t i = 0; i < m; i++)                                                         \
            for (int64_t p = 0; p < k; p++) at[p * m + i] = a[i * k + p] = (T)next();           \
        for (int64_t p = 0; p < k; p++)                                                         \
            for (int64_t j = 0; j < n; j++) bt[j * k + p] = b[p * n + j] = (T)next();           \
        for (int64_t i = 0; i < m * crs; i++) c0[i] = c[0][i] = c[1][i] = c[2][i] = (T)next();  \
        kiln_gemm_##SUFFIX(m, n, k, a, k, 1, b, n, 1, c[0], crs, accumulate, scratch);          \
        kiln_gemm_##SUFFIX(m, n, k, at, 1, m, b, n, 1, c[1], crs, accumulate, scratch);         \
        kiln_gemm_##SUFFIX(m, n, k, a, k, 1, bt, 1, k, c[2], crs, accumulate, scratch);         \
        static const char *way[3] = {"A in place", "A transposed", "B transposed"};             \
        int bad = 0;                                                                            \
        for (int64_t i = 0; i < m && !bad; i++) {                                               \
            for (int64_t j = 0; j < crs && !bad; j++) {                                         \
                int64_t at_ij = i * crs + j;                                                    \
                double want = j < n && accumulate ? (double)c0[at_ij] : 0, scale = 1;           \
                for (int64_t p = 0; j < n && p < k; p++) {                                      \
                    want += (double)a[i * k + p] * (double)b[p * n + j];                        \
                    scale += fabs((double)a[i * k + p] * (double)b[p * n + j]);                 \
                }                                                                               \
                if (j >= n) want = (double)c0[at_ij];                                           \
                for (int w = 0; w < 3 && !bad; w++) {                                           \
                    double got = (double)c[w][at_ij];                                           \
                    if (fabs(got - want) > (j < n ? EPS * scale * (double)(k + 2) : 0)) {       \
                        printf("%s m%lld n%lld k%lld accumulate %d pad %lld, %s: [%lld,%lld] "  \
                               "%.17g, want %.17g\n", #SUFFIX, (long long)m, (long long)n,      \
                               (long long)k, accumulate, (long long)pad, way[w], (long long)i,  \
                               (long long)j, got, want);                                        \
                        bad = 1;                                                                \
                    }                                                                           \
                }                                                                               \
                if (!bad && memcmp(&c[0][at_ij], &c[1][at_ij], sizeof(T)) != 0) {               \
                    printf("%s m%lld n%lld k%lld accumulate %d pad %lld: [%lld,%lld] A in place " \
                           "%.17g, A transposed %.17g\n", #SUFFIX, (long long)m, (long long)n,  \
                           (long long)k, accumulate, (long long)pad, (long long)i,              \
                           (long long)j, (double)c[0][at_ij], (double)c[1][at_ij]);             \
                    bad = 1;                                                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        free(a); free(at); free(b); free(bt); free(c0);                                         \
        for (int w = 0; w < 3; w++) free(c[w]);                                                 \
        return bad;                                                                             \
    }

CHECK(float, f32, 1e-6)
CHECK(double, f64, 1e-14)

int main(void) {
    static const int64_t ms[] = {1, 2, 5, 6, 7, 13, 72, 73, 150};
    static const int64_t ns[] = {1, 3, 16, 31, 32, 33, 100, 513};
    static const int64_t ks[] = {1, 7, 256, 300, 600};
    void *scratch = malloc(kiln_gemm_scratch_bytes());
    int failures = 0, products = 0;
    for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
        for (size_t y = 0; y < sizeof ns / sizeof *ns; y++)
            for (size_t z = 0; z < sizeof ks / sizeof *ks; z++) {
                int64_t m = ms[x], n = ns[y], k = ks[z];
                int accumulate = (int)((x + y + z) % 2);
                int64_t pad = (int64_t)((x + z) % 3);
                failures += check_f32(m, n, k, accumulate, pad, scratch);
                failures += check_f64(m, n, k, !accumulate, pad, scratch);
                products += 2;
            }
    /* B's rows 4 KiB or more apart (packed) under many rows, and close (read in place). */
    failures += check_f32(200, 1024, 64, 0, 0, scratch);
    failures += check_f32(200, 40, 64, 1, 0, scratch);
    products += 2;
    free(scratch);
    printf("done %d products, %d failures\n", products, failures);
    return failures != 0;
}
"#;

fn scratch(name: &str) -> Scratch {
    Scratch::new("aotgemm", name)
}

#[test]
fn the_c_gemm_matches_a_double_sum_and_reads_a_in_place_bit_for_bit() {
    let dir = scratch("gemm");
    std::fs::write(dir.join("kiln_rt.c"), kiln::codegen::aot::RUNTIME_C).unwrap();
    std::fs::write(dir.join("check.c"), PROGRAM).unwrap();
    // As a library compiles its runtime (`runtime/src/aot.rs`), warnings as errors.
    let compile = Command::new("cc")
        .args(["-O3", "-march=native", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", "check", "check.c", "-lm"])
        .current_dir(&dir)
        .output()
        .expect("the system C compiler `cc` runs");
    assert!(compile.status.success(), "cc: {}", String::from_utf8_lossy(&compile.stderr));
    let run = Command::new(dir.join("check")).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(stdout.contains("done 722 products, 0 failures"), "{stdout}");
}
