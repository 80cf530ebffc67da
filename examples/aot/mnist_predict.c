/* mnist_predict.c: classify one MNIST digit with a model library built by `kiln build`.
 *
 *   kiln build mnist_mlp --weights runs/mnist_mlp/model.safetensors -o build
 *   cc -O2 -Ibuild examples/aot/mnist_predict.c -Lbuild -lmnist_mlp -Wl,-rpath,'$ORIGIN/build' -o predict
 *   ./predict examples/aot/digit.npy
 *
 * The image is a 28x28 .npy of uint8 pixels (0-255), or 784 raw bytes. It is scaled to [0, 1]
 * and standardized with MNIST's mean and deviation, exactly as `kiln train` feeds the model,
 * then run through mnist_mlp_run; the program prints the arg-max of the logits. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mnist_mlp.h"

/* Reads 784 pixels from a .npy file of uint8 (header skipped) or from raw bytes. */
static int read_image(const char *path, unsigned char pixels[784]) {
    unsigned char buf[4096];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t start = 0;
    if (n >= 10 && memcmp(buf, "\x93NUMPY", 6) == 0) {
        size_t header = buf[8] | (size_t)buf[9] << 8;
        start = 10 + header;
        if (buf[6] >= 2 && n >= 12) {
            header = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
            start = 12 + header;
        }
        if (start > n || strstr((const char *)buf + 10, "u1") == NULL) {
            fprintf(stderr, "%s: expected a .npy of uint8 pixels\n", path);
            return -1;
        }
    }
    if (n - start != 784) {
        fprintf(stderr, "%s: expected 784 pixels (28x28), found %zu\n", path, n - start);
        return -1;
    }
    memcpy(pixels, buf + start, 784);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGE.npy\n", argv[0]);
        return 2;
    }
    const kiln_tensor_desc *in = mnist_mlp_input_desc(0), *out = mnist_mlp_output_desc(0);
    if (in == NULL || out == NULL || in->shape[0] != 1 || out->shape[1] != 10) {
        fprintf(stderr, "this program needs mnist_mlp built with --batch 1\n");
        return 2;
    }
    unsigned char pixels[784];
    if (read_image(argv[1], pixels) != 0) return 1;
    float x[784], logits[10];
    for (int i = 0; i < 784; i++) x[i] = ((float)pixels[i] / 255.0f - 0.1307f) / 0.3081f;
    const void *inputs[] = {x};
    void *outputs[] = {logits};
    int32_t code = mnist_mlp_run(inputs, outputs);
    if (code != 0) {
        fprintf(stderr, "mnist_mlp_run: %s\n", mnist_mlp_error_message(code));
        return 1;
    }
    int best = 0;
    for (int i = 1; i < 10; i++)
        if (logits[i] > logits[best]) best = i;
    printf("predicted digit: %d\n", best);
    return 0;
}
