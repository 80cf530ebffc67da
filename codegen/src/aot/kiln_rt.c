/* kiln_rt.c: the runtime a model library compiled ahead of time carries inside it.
 *
 * Matrix products (a packed, register-blocked GEMM with strided operands, and a row-times-
 * matrix loop for one-row products), convolutions as im2col + GEMM (forward, input gradient
 * through col2im, weight gradient summed over the batch), the block copies of `pad` and
 * `concat`, and `gather`. Everything is single-threaded and works in a caller-given scratch area, so calls
 * on several threads at once never share memory. Built by kiln with the system C compiler
 * for the host (`-O2 -march=native`), beside the Cranelift object of the model's kernels.
 * Every symbol is hidden: a library exports only its model's `NAME_*` functions. */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KILN_HIDDEN __attribute__((visibility("hidden")))

/* The widest vector registers the target has (vectors wider than them are emulated
 * slowly). */
#if defined(__AVX512F__)
#define KILN_VEC_BYTES 64
#elif defined(__AVX__)
#define KILN_VEC_BYTES 32
#else
#define KILN_VEC_BYTES 16
#endif

/* Vectors of one row's product kept in registers by the one-row GEMM. */
#define KILN_ROW_VECTORS (KILN_VEC_BYTES == 64 ? 16 : 8)

/* Blocking of the packed GEMM: MR x NR register tiles, KC deep, MC rows and NC columns of
 * packed operands (the packed blocks fit the scratch area KILN_GEMM_SCRATCH_BYTES). */
#define KILN_MR 6
#define KILN_KC 256
#define KILN_MC 72
#define KILN_NC 512

/* Scratch bytes one GEMM call needs (packed A and B blocks, 64-byte aligned parts). */
#define KILN_GEMM_SCRATCH_BYTES ((size_t)(KILN_MC * KILN_KC + KILN_KC * KILN_NC) * 8 + 128)

KILN_HIDDEN size_t kiln_gemm_scratch_bytes(void) { return KILN_GEMM_SCRATCH_BYTES; }

static inline int64_t kiln_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* One GEMM per element type: C[m x n] (row stride crs, column stride 1) = A[m x k] . B[k x n]
 * (+ C when `accumulate`), A and B read through row and column strides in elements. */
#define KILN_DEFINE_GEMM(T, SUFFIX)                                                                \
    typedef T kiln_v_##SUFFIX __attribute__((vector_size(KILN_VEC_BYTES)));                        \
    enum { KILN_NR_##SUFFIX = 2 * (int)(KILN_VEC_BYTES / sizeof(T)) };                             \
                                                                                                   \
    /* Rows i0..i0+mc, depths p0..p0+kc of A as MR-row panels: ap[panel][p][r]. */                 \
    static void kiln_pack_a_##SUFFIX(const T *a, int64_t ars, int64_t acs, int64_t mc,             \
                                     int64_t kc, T *ap) {                                          \
        for (int64_t i = 0; i < mc; i += KILN_MR) {                                                \
            int64_t mr = kiln_min(KILN_MR, mc - i);                                                \
            for (int64_t p = 0; p < kc; p++) {                                                     \
                for (int64_t r = 0; r < mr; r++) ap[p * KILN_MR + r] = a[(i + r) * ars + p * acs]; \
                for (int64_t r = mr; r < KILN_MR; r++) ap[p * KILN_MR + r] = 0;                    \
            }                                                                                      \
            ap += kc * KILN_MR;                                                                    \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Depths p0..p0+kc, columns j0..j0+nc of B as NR-column panels: bp[panel][p][c]. With         \
     * `direct`, full panels are left out (the GEMM reads them from B). */                         \
    static void kiln_pack_b_##SUFFIX(const T *b, int64_t brs, int64_t bcs, int64_t kc,             \
                                     int64_t nc, int direct, T *bp) {                              \
        const int64_t nr_full = KILN_NR_##SUFFIX;                                                  \
        for (int64_t j = 0; j < nc; j += nr_full) {                                                \
            int64_t nr = kiln_min(nr_full, nc - j);                                                \
            if (direct && nr == nr_full) {                                                         \
                bp += kc * nr_full;                                                                \
                continue;                                                                          \
            }                                                                                      \
            for (int64_t p = 0; p < kc; p++) {                                                     \
                T *dst = bp + p * nr_full;                                                         \
                const T *src = b + p * brs + j * bcs;                                              \
                if (bcs == 1) {                                                                    \
                    memcpy(dst, src, (size_t)nr * sizeof(T));                                      \
                } else {                                                                           \
                    for (int64_t c = 0; c < nr; c++) dst[c] = src[c * bcs];                        \
                }                                                                                  \
                for (int64_t c = nr; c < nr_full; c++) dst[c] = 0;                                 \
            }                                                                                      \
            bp += kc * nr_full;                                                                    \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* One MR x NR tile: c (rows mr, columns nr of it) = or += A . bp over kc depths, A's element \
     * (r, p) at ap[r ars + p acs] (a packed panel, or A's rows themselves) and B's rows of NR     \
     * elements bstride apart (a packed panel, or B itself). Inlined into two entries where the    \
     * strides of A are constants or loop-invariant. */                                           \
    static inline __attribute__((always_inline)) void kiln_tile_body_##SUFFIX(                     \
        int64_t kc, const T *ap, int64_t ars, int64_t acs, const T *bp, int64_t bstride, T *c,     \
        int64_t crs, int64_t mr, int64_t nr, int add) {                                            \
        enum { L = KILN_VEC_BYTES / sizeof(T) };                                                   \
        kiln_v_##SUFFIX acc[KILN_MR][2];                                                           \
        memset(acc, 0, sizeof acc);                                                                \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            kiln_v_##SUFFIX b0, b1;                                                                \
            memcpy(&b0, bp + p * bstride, sizeof b0);                                              \
            memcpy(&b1, bp + p * bstride + L, sizeof b1);                                          \
            for (int r = 0; r < KILN_MR; r++) {                                                    \
                T x = ap[r * ars + p * acs];                                                       \
                acc[r][0] += x * b0;                                                               \
                acc[r][1] += x * b1;                                                               \
            }                                                                                      \
        }                                                                                          \
        if (mr == KILN_MR && nr == KILN_NR_##SUFFIX) {                                             \
            /* A whole tile: the accumulators go straight to C. */                                 \
            for (int r = 0; r < KILN_MR; r++) {                                                    \
                T *dst = c + r * crs;                                                              \
                if (add) {                                                                         \
                    kiln_v_##SUFFIX c0, c1;                                                        \
                    memcpy(&c0, dst, sizeof c0);                                                   \
                    memcpy(&c1, dst + L, sizeof c1);                                               \
                    acc[r][0] += c0;                                                               \
                    acc[r][1] += c1;                                                               \
                }                                                                                  \
                memcpy(dst, &acc[r][0], sizeof acc[r][0]);                                         \
                memcpy(dst + L, &acc[r][1], sizeof acc[r][1]);                                     \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t r = 0; r < mr; r++) {                                                         \
            T row[KILN_NR_##SUFFIX];                                                               \
            memcpy(row, &acc[r][0], sizeof acc[r][0]);                                             \
            memcpy(row + L, &acc[r][1], sizeof acc[r][1]);                                         \
            T *dst = c + r * crs;                                                                  \
            if (add) {                                                                             \
                for (int64_t j = 0; j < nr; j++) dst[j] += row[j];                                 \
            } else {                                                                               \
                for (int64_t j = 0; j < nr; j++) dst[j] = row[j];                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* A tile over a packed panel of A (zero-padded to MR rows). */                              \
    static void kiln_tile_##SUFFIX(int64_t kc, const T *ap, const T *bp, int64_t bstride, T *c,    \
                                   int64_t crs, int64_t mr, int64_t nr, int add) {                 \
        kiln_tile_body_##SUFFIX(kc, ap, 1, KILN_MR, bp, bstride, c, crs, mr, nr, add);             \
    }                                                                                              \
                                                                                                   \
    /* A whole-height tile over MR rows of A read where they are (rows ars apart, columns         \
     * adjacent): no packing, each row one stream the prefetcher follows. */                      \
    static void kiln_tile_rows_##SUFFIX(int64_t kc, const T *a, int64_t ars, const T *bp,          \
                                        int64_t bstride, T *c, int64_t crs, int64_t nr, int add) { \
        kiln_tile_body_##SUFFIX(kc, a, ars, 1, bp, bstride, c, crs, KILN_MR, nr, add);             \
    }                                                                                              \
                                                                                                   \
    /* Columns j0..j0 + V L of one row times a row-major matrix, the V vectors of c in             \
     * registers while the rows of B stream past once (V is a constant where it is inlined). */    \
    static inline __attribute__((always_inline)) void kiln_row_block_##SUFFIX(                     \
        int64_t k, const T *a, int64_t acs, const T *b, int64_t brs, T *c, int accumulate,         \
        const int V) {                                                                             \
        enum { L = KILN_VEC_BYTES / sizeof(T) };                                                   \
        kiln_v_##SUFFIX acc[KILN_ROW_VECTORS];                                                     \
        for (int v = 0; v < V; v++) {                                                              \
            if (accumulate) memcpy(&acc[v], c + v * L, sizeof acc[v]);                             \
            else memset(&acc[v], 0, sizeof acc[v]);                                                \
        }                                                                                          \
        for (int64_t p = 0; p < k; p++) {                                                          \
            const T x = a[p * acs];                                                                \
            const T *row = b + p * brs;                                                            \
            for (int v = 0; v < V; v++) {                                                          \
                kiln_v_##SUFFIX w;                                                                 \
                memcpy(&w, row + v * L, sizeof w);                                                 \
                acc[v] += x * w;                                                                   \
            }                                                                                      \
        }                                                                                          \
        for (int v = 0; v < V; v++) memcpy(c + v * L, &acc[v], sizeof acc[v]);                     \
    }                                                                                              \
                                                                                                   \
    /* c[j] (+)= sum_p a[p acs] b[p brs + j] for j < n, sums in order of p: one row times a        \
     * row-major matrix, in column blocks of KILN_ROW_VECTORS, 4 and 1 vectors, then a plain       \
     * loop for the last columns. */                                                               \
    static void kiln_row_##SUFFIX(int64_t n, int64_t k, const T *a, int64_t acs, const T *b,       \
                                  int64_t brs, T *restrict c, int accumulate) {                    \
        enum { L = KILN_VEC_BYTES / sizeof(T) };                                                   \
        int64_t j = 0;                                                                             \
        for (; j + KILN_ROW_VECTORS * L <= n; j += KILN_ROW_VECTORS * L)                           \
            kiln_row_block_##SUFFIX(k, a, acs, b + j, brs, c + j, accumulate, KILN_ROW_VECTORS);   \
        for (; j + 4 * L <= n; j += 4 * L)                                                         \
            kiln_row_block_##SUFFIX(k, a, acs, b + j, brs, c + j, accumulate, 4);                  \
        for (; j + L <= n; j += L) kiln_row_block_##SUFFIX(k, a, acs, b + j, brs, c + j, accumulate, 1); \
        if (j == n) return;                                                                        \
        for (int64_t jj = j; jj < n; jj++) {                                                       \
            T sum = accumulate ? c[jj] : (T)0;                                                     \
            for (int64_t p = 0; p < k; p++) sum += a[p * acs] * b[p * brs + jj];                   \
            c[jj] = sum;                                                                           \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    KILN_HIDDEN void kiln_gemm_##SUFFIX(int64_t m, int64_t n, int64_t k, const T *a, int64_t ars,  \
                                        int64_t acs, const T *b, int64_t brs, int64_t bcs, T *c,   \
                                        int64_t crs, int accumulate, void *scratch) {              \
        if (m == 0 || n == 0) return;                                                              \
        if (k == 0) {                                                                              \
            if (!accumulate)                                                                       \
                for (int64_t i = 0; i < m; i++) memset(c + i * crs, 0, (size_t)n * sizeof(T));     \
            return;                                                                                \
        }                                                                                          \
        if (m == 1 && bcs == 1) {                                                                  \
            kiln_row_##SUFFIX(n, k, a, acs, b, brs, c, accumulate);                                \
            return;                                                                                \
        }                                                                                          \
        /* Read B's full panels where they are when few rows reuse them, or when B's rows are      \
         * close (at a stride of 4 KiB or more the panel's rows collide in the caches: pack). */   \
        int direct = bcs == 1 && (m <= 4 * KILN_MR || brs * (int64_t)sizeof(T) <= 1024);           \
        uintptr_t base = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;                               \
        T *ap = (T *)base;                                                                         \
        T *bp = (T *)((base + (size_t)KILN_MC * KILN_KC * sizeof(T) + 63) & ~(uintptr_t)63);       \
        for (int64_t j0 = 0; j0 < n; j0 += KILN_NC) {                                              \
            int64_t nc = kiln_min(KILN_NC, n - j0);                                                \
            for (int64_t p0 = 0; p0 < k; p0 += KILN_KC) {                                          \
                int64_t kc = kiln_min(KILN_KC, k - p0);                                            \
                int add = accumulate || p0 > 0;                                                    \
                kiln_pack_b_##SUFFIX(b + p0 * brs + j0 * bcs, brs, bcs, kc, nc, direct, bp);       \
                for (int64_t i0 = 0; i0 < m; i0 += KILN_MC) {                                      \
                    int64_t mc = kiln_min(KILN_MC, m - i0);                                        \
                    /* Rows of A with adjacent columns are read in place (packing them cost    \
                     * ~10% of a 128 x 784 x 256 product); only a last panel of fewer than MR   \
                     * rows is packed, zero-padded. */                                         \
                    int64_t whole = acs == 1 ? mc - mc % KILN_MR : 0;                          \
                    kiln_pack_a_##SUFFIX(a + (i0 + whole) * ars + p0 * acs, ars, acs, mc - whole,  \
                                         kc, ap + whole * kc);                                 \
                    for (int64_t j = 0; j < nc; j += KILN_NR_##SUFFIX) {                           \
                        int64_t nr = kiln_min(KILN_NR_##SUFFIX, nc - j);                           \
                        const T *bpanel = bp + (j / KILN_NR_##SUFFIX) * kc * KILN_NR_##SUFFIX;     \
                        int64_t bstride = KILN_NR_##SUFFIX;                                        \
                        if (direct && nr == KILN_NR_##SUFFIX) {                                    \
                            bpanel = b + p0 * brs + j0 + j;                                        \
                            bstride = brs;                                                         \
                        }                                                                          \
                        for (int64_t i = 0; i < mc; i += KILN_MR) {                                \
                            int64_t mr = kiln_min(KILN_MR, mc - i);                                \
                            T *ct = c + (i0 + i) * crs + j0 + j;                                   \
                            if (i < whole)                                                         \
                                kiln_tile_rows_##SUFFIX(kc, a + (i0 + i) * ars + p0, ars, bpanel,  \
                                                        bstride, ct, crs, nr, add);                \
                            else                                                                   \
                                kiln_tile_##SUFFIX(kc, ap + i * kc, bpanel, bstride, ct, crs, mr,  \
                                                   nr, add);                                       \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

KILN_DEFINE_GEMM(float, f32)
KILN_DEFINE_GEMM(double, f64)

/* Convolutions: `cols` holds one image's im2col matrix (K x P elements, K = c/groups kh kw,
 * P = oh ow), `scratch` the GEMM's KILN_GEMM_SCRATCH_BYTES. */

/* The geometry of a convolution: x [n, c, h, w], w [o, c/groups, kh, kw], y [n, o, oh, ow]. */
typedef struct {
    int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
} kiln_conv;

/* The output columns lo..hi whose input column ox sw + kx dw - pw lies inside 0..w. */
static void kiln_valid_columns(const kiln_conv *g, int64_t kx, int64_t *lo, int64_t *hi) {
    int64_t shift = kx * g->dw - g->pw; /* input column of output column 0 */
    int64_t first = shift >= 0 ? 0 : (-shift + g->sw - 1) / g->sw;
    int64_t last = g->w - 1 - shift < 0 ? -1 : (g->w - 1 - shift) / g->sw; /* inclusive */
    *lo = first < g->ow ? first : g->ow;
    *hi = last + 1 < g->ow ? last + 1 : g->ow;
    if (*hi < *lo) *hi = *lo;
}

#define KILN_DEFINE_CONV(T, SUFFIX)                                                                \
    /* d[0..n) = s[0..n) for the short rows of im2col (an output's width): fixed-size moves,       \
     * overlapping at the end, instead of a call to memcpy per row. */                             \
    static inline void kiln_copy_##SUFFIX(T *d, const T *s, int64_t n) {                           \
        if (n > 64) {                                                                              \
            memcpy(d, s, (size_t)n * sizeof(T));                                                   \
        } else if (n >= 16) {                                                                      \
            for (int64_t i = 0; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16 * sizeof(T));        \
            memcpy(d + n - 16, s + n - 16, 16 * sizeof(T));                                        \
        } else if (n >= 4) {                                                                       \
            int64_t h = n >= 8 ? 8 : 4;                                                            \
            if (h == 8) {                                                                          \
                memcpy(d, s, 8 * sizeof(T));                                                       \
                memcpy(d + n - 8, s + n - 8, 8 * sizeof(T));                                       \
            } else {                                                                               \
                memcpy(d, s, 4 * sizeof(T));                                                       \
                memcpy(d + n - 4, s + n - 4, 4 * sizeof(T));                                       \
            }                                                                                      \
        } else {                                                                                   \
            if (n > 0) d[0] = s[0];                                                                \
            if (n > 1) d[1] = s[1];                                                                \
            if (n > 2) d[2] = s[2];                                                                \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* cols[(ci, ky, kx)][(oy, ox)] = xn[group g's channel ci, oy sh + ky dh - ph,                 \
     * ox sw + kx dw - pw], 0 outside the image. */                                                \
    static void kiln_im2col_##SUFFIX(const kiln_conv *g, const T *xn, int64_t grp, T *cols) {      \
        /* A local copy: stores to T never alias it, so its fields stay in registers. */           \
        const kiln_conv geometry = *g;                                                             \
        g = &geometry;                                                                             \
        int64_t cg = g->c / g->groups, p = g->oh * g->ow;                                          \
        int64_t los[g->kw > 0 ? g->kw : 1], his[g->kw > 0 ? g->kw : 1];                            \
        for (int64_t kx = 0; kx < g->kw; kx++) kiln_valid_columns(g, kx, &los[kx], &his[kx]);      \
        for (int64_t ci = 0; ci < cg; ci++) {                                                      \
            const T *plane = xn + (grp * cg + ci) * g->h * g->w;                                   \
            for (int64_t ky = 0; ky < g->kh; ky++)                                                 \
                for (int64_t kx = 0; kx < g->kw; kx++) {                                           \
                    T *row = cols + ((ci * g->kh + ky) * g->kw + kx) * p;                          \
                    int64_t lo = los[kx], hi = his[kx];                                            \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                        int64_t iy = oy * g->sh + ky * g->dh - g->ph;                              \
                        T *out = row + oy * g->ow;                                                 \
                        if (iy < 0 || iy >= g->h) {                                                \
                            memset(out, 0, (size_t)g->ow * sizeof(T));                             \
                            continue;                                                              \
                        }                                                                          \
                        const T *src = plane + iy * g->w;                                          \
                        int64_t shift = kx * g->dw - g->pw;                                        \
                        for (int64_t ox = 0; ox < lo; ox++) out[ox] = 0;                           \
                        if (g->sw == 1) {                                                          \
                            kiln_copy_##SUFFIX(out + lo, src + lo + shift, hi - lo);               \
                        } else {                                                                   \
                            for (int64_t ox = lo; ox < hi; ox++) out[ox] = src[ox * g->sw + shift]; \
                        }                                                                          \
                        for (int64_t ox = hi > lo ? hi : lo; ox < g->ow; ox++) out[ox] = 0;        \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* The inverse scatter: adds cols back into image gxn (group grp). */                          \
    static void kiln_col2im_##SUFFIX(const kiln_conv *g, const T *cols, int64_t grp, T *gxn) {     \
        /* A local copy: stores to T never alias it, so its fields stay in registers. */           \
        const kiln_conv geometry = *g;                                                             \
        g = &geometry;                                                                             \
        int64_t cg = g->c / g->groups, p = g->oh * g->ow;                                          \
        for (int64_t ci = 0; ci < cg; ci++) {                                                      \
            T *plane = gxn + (grp * cg + ci) * g->h * g->w;                                        \
            for (int64_t ky = 0; ky < g->kh; ky++)                                                 \
                for (int64_t kx = 0; kx < g->kw; kx++) {                                           \
                    const T *row = cols + ((ci * g->kh + ky) * g->kw + kx) * p;                    \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                        int64_t iy = oy * g->sh + ky * g->dh - g->ph;                              \
                        if (iy < 0 || iy >= g->h) continue;                                        \
                        for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                            int64_t ix = ox * g->sw + kx * g->dw - g->pw;                          \
                            if (ix >= 0 && ix < g->w) plane[iy * g->w + ix] += row[oy * g->ow + ox]; \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* y = conv2d(x, w). */                                                                        \
    KILN_HIDDEN void kiln_conv_forward_##SUFFIX(const kiln_conv *g, const T *x, const T *w,        \
                                                T *y, T *cols, void *scratch) {                    \
        int64_t cg = g->c / g->groups, og = g->o / g->groups, k = cg * g->kh * g->kw;              \
        int64_t p = g->oh * g->ow;                                                                 \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t grp = 0; grp < g->groups; grp++) {                                        \
                kiln_im2col_##SUFFIX(g, x + n * g->c * g->h * g->w, grp, cols);                    \
                kiln_gemm_##SUFFIX(og, p, k, w + grp * og * k, k, 1, cols, p, 1,                   \
                                   y + (n * g->o + grp * og) * p, p, 0, scratch);                  \
            }                                                                                      \
    }                                                                                              \
                                                                                                   \
    /* dx = conv2d_grad_input(dy, w): cols = W_g^T . dy, scattered back. */                        \
    KILN_HIDDEN void kiln_conv_grad_input_##SUFFIX(const kiln_conv *g, const T *dy, const T *w,    \
                                                   T *dx, T *cols, void *scratch) {                \
        int64_t cg = g->c / g->groups, og = g->o / g->groups, k = cg * g->kh * g->kw;              \
        int64_t p = g->oh * g->ow;                                                                 \
        memset(dx, 0, (size_t)(g->n * g->c * g->h * g->w) * sizeof(T));                            \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t grp = 0; grp < g->groups; grp++) {                                        \
                kiln_gemm_##SUFFIX(k, p, og, w + grp * og * k, 1, k,                               \
                                   dy + (n * g->o + grp * og) * p, p, 1, cols, p, 0, scratch);     \
                kiln_col2im_##SUFFIX(g, cols, grp, dx + n * g->c * g->h * g->w);                   \
            }                                                                                      \
    }                                                                                              \
                                                                                                   \
    /* dw = conv2d_grad_weight(x, dy): dW_g = sum over images of dy_g . cols^T. */                 \
    KILN_HIDDEN void kiln_conv_grad_weight_##SUFFIX(const kiln_conv *g, const T *x, const T *dy,   \
                                                    T *dw, T *cols, void *scratch) {               \
        int64_t cg = g->c / g->groups, og = g->o / g->groups, k = cg * g->kh * g->kw;              \
        int64_t p = g->oh * g->ow;                                                                 \
        memset(dw, 0, (size_t)(g->o * k) * sizeof(T));                                             \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t grp = 0; grp < g->groups; grp++) {                                        \
                kiln_im2col_##SUFFIX(g, x + n * g->c * g->h * g->w, grp, cols);                    \
                kiln_gemm_##SUFFIX(og, k, p, dy + (n * g->o + grp * og) * p, p, 1, cols, 1, p,     \
                                   dw + grp * og * k, k, 1, scratch);                              \
            }                                                                                      \
    }

KILN_DEFINE_CONV(float, f32)
KILN_DEFINE_CONV(double, f64)

/* out = concat(parts, axis) for row-major buffers: `outer` blocks per operand, operand i's
 * block of block_bytes[i] bytes landing after the previous operands' in each row of
 * row_bytes. */
KILN_HIDDEN void kiln_concat(int64_t parts, const void *const *src, const int64_t *block_bytes,
                             int64_t outer, int64_t row_bytes, void *out) {
    int64_t at = 0;
    for (int64_t i = 0; i < parts; i++) {
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out + o * row_bytes + at, (const char *)src[i] + o * block_bytes[i],
                   (size_t)block_bytes[i]);
        at += block_bytes[i];
    }
}

/* out = pad(x, low, high, fill) for a row-major x of `rank` >= 1 axes with extents xd, the
 * result of extents od; elements of `size` bytes, the fill value's bytes in `fill`. */
KILN_HIDDEN void kiln_pad(int64_t rank, const int64_t *xd, const int64_t *od, const int64_t *low,
                          int64_t size, const void *fill, const void *x, void *out) {
    int64_t total = 1, rows = 1, ostride[16];
    for (int64_t d = 0; d < rank; d++) total *= od[d];
    for (int64_t d = 0; d < rank - 1; d++) rows *= xd[d];
    for (int64_t i = 0; i < total; i++) memcpy((char *)out + i * size, fill, (size_t)size);
    if (rows == 0 || xd[rank - 1] == 0) return;
    ostride[rank - 1] = 1;
    for (int64_t d = rank - 2; d >= 0; d--) ostride[d] = ostride[d + 1] * od[d + 1];
    int64_t run = xd[rank - 1] * size, index[16] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t dst = low[rank - 1] * ostride[rank - 1];
        for (int64_t d = 0; d < rank - 1; d++) dst += (index[d] + low[d]) * ostride[d];
        memcpy((char *)out + dst * size, (const char *)x + r * run, (size_t)run);
        for (int64_t d = rank - 2; d >= 0; d--) {
            if (++index[d] < xd[d]) break;
            index[d] = 0;
        }
    }
}

/* out = gather(x, idx, axis) on row-major buffers: for each of `outer` blocks of x (the axes
 * before `axis`, `extent` slices each) and each of the `count` indices, the slice of
 * `slice_bytes` at that index. Returns 1, writing nothing, if an index is outside 0..extent. */
KILN_HIDDEN int kiln_gather(const void *x, const void *idx, int idx_is_64, int64_t count, int64_t outer,
                            int64_t extent, int64_t slice_bytes, void *out) {
    for (int64_t j = 0; j < count; j++) {
        int64_t i = idx_is_64 ? ((const int64_t *)idx)[j] : ((const int32_t *)idx)[j];
        if (i < 0 || i >= extent) return 1;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < count; j++) {
            int64_t i = idx_is_64 ? ((const int64_t *)idx)[j] : ((const int32_t *)idx)[j];
            memcpy((char *)out + (o * count + j) * slice_bytes,
                   (const char *)x + (o * extent + i) * slice_bytes, (size_t)slice_bytes);
        }
    return 0;
}
