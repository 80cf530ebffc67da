/* bench.c: inference latency of any kiln model library, called from C.
 *
 *   cc -O2 examples/aot/bench.c -o bench -ldl
 *   ./bench build/libmnist_mlp.so mnist_mlp [runs]
 *
 * Loads the library with dlopen, sizes every input and output from its descriptors, fills the
 * inputs with values in [-1, 1), runs the model once to warm up, then prints the median and
 * the fastest of `runs` timed calls (default 1000) in microseconds. */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { const char *name; int32_t dtype; int32_t rank; const int64_t *shape; } kiln_tensor_desc;

static void *symbol(void *lib, const char *model, const char *function) {
    char name[256];
    snprintf(name, sizeof name, "%s_%s", model, function);
    void *p = dlsym(lib, name);
    if (p == NULL) {
        fprintf(stderr, "%s has no function %s\n", model, name);
        exit(2);
    }
    return p;
}

static size_t bytes_of(const kiln_tensor_desc *d) {
    static const size_t size[] = {4, 8, 4, 8, 1};
    size_t n = size[d->dtype];
    for (int32_t i = 0; i < d->rank; i++) n *= (size_t)d->shape[i];
    return n;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBRARY.so NAME [runs]\n", argv[0]);
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 1000;
    if (runs < 1) runs = 1;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    int32_t (*num_inputs)(void) = (int32_t (*)(void))symbol(lib, argv[2], "num_inputs");
    int32_t (*num_outputs)(void) = (int32_t (*)(void))symbol(lib, argv[2], "num_outputs");
    const kiln_tensor_desc *(*input_desc)(int32_t) =
        (const kiln_tensor_desc *(*)(int32_t))symbol(lib, argv[2], "input_desc");
    const kiln_tensor_desc *(*output_desc)(int32_t) =
        (const kiln_tensor_desc *(*)(int32_t))symbol(lib, argv[2], "output_desc");
    int32_t (*run)(const void *const *, void *const *) =
        (int32_t (*)(const void *const *, void *const *))symbol(lib, argv[2], "run");
    const char *(*message)(int32_t) = (const char *(*)(int32_t))symbol(lib, argv[2], "error_message");

    int32_t ni = num_inputs(), no = num_outputs();
    const void **inputs = calloc((size_t)ni + 1, sizeof *inputs);
    void **outputs = calloc((size_t)no + 1, sizeof *outputs);
    for (int32_t i = 0; i < ni; i++) {
        const kiln_tensor_desc *d = input_desc(i);
        size_t n = bytes_of(d);
        unsigned char *p = malloc(n ? n : 1);
        srand(7);
        for (size_t j = 0; j < n; j += 4) {
            /* Floats in [-1, 1); other dtypes get small integers. */
            if (d->dtype == 0) *(float *)(p + j) = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
            else for (size_t k = j; k < j + 4 && k < n; k++) p[k] = (unsigned char)(rand() % 2);
        }
        inputs[i] = p;
    }
    for (int32_t i = 0; i < no; i++) outputs[i] = malloc(bytes_of(output_desc(i)) + 1);

    int32_t code = run(inputs, outputs);
    if (code != 0) {
        fprintf(stderr, "%s_run: %s\n", argv[2], message(code));
        return 1;
    }
    double *us = malloc((size_t)runs * sizeof *us);
    for (int r = 0; r < runs; r++) {
        double t0 = now_us();
        run(inputs, outputs);
        us[r] = now_us() - t0;
    }
    qsort(us, (size_t)runs, sizeof *us, by_value);
    printf("%s: median %.2f us, fastest %.2f us over %d runs\n", argv[2], us[runs / 2], us[0], runs);
    return 0;
}
