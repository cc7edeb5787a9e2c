/* replay_main.c -- runs a libFuzzer target without libFuzzer: feeds every
 * regular file of the directory argv[1], in name order, to
 * LLVMFuzzerTestOneInput(), each from a heap block of exactly its size.
 * A broken invariant aborts inside the target; an empty or unreadable
 * directory is a failure too, so that a lost corpus does not pass quietly.
 * Registered in CTest (fuzz_frame_corpus) so the corpus runs in every build.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the regular file dir/name into a block of exactly its size.
 * Returns 1 and the block, 0 when it is not a regular file, -1 on error. */
static int read_input(const char *dir, const char *name, uint8_t **data, size_t *size)
{
    char path[4096];
    struct stat st;
    uint8_t *buf = NULL;
    size_t done = 0;
    int fd, rc = -1;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "replay: cannot stat %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = 0;
        goto out;
    }
    buf = malloc((size_t)st.st_size); /* NULL for an empty file is fine */
    if (!buf && st.st_size) {
        fprintf(stderr, "replay: out of memory for %s\n", path);
        goto out;
    }
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n <= 0) {
            fprintf(stderr, "replay: cannot read %s: %s\n", path, n < 0 ? strerror(errno) : "short file");
            free(buf);
            buf = NULL;
            goto out;
        }
        done += (size_t)n;
    }
    *data = buf;
    *size = done;
    rc = 1;
out:
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    struct dirent **names = NULL;
    size_t n_inputs = 0, n_bytes = 0;
    int n_names, status = EXIT_SUCCESS;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIRECTORY\n", argv[0]);
        return EXIT_FAILURE;
    }
    n_names = scandir(argv[1], &names, NULL, alphasort);
    if (n_names < 0) {
        fprintf(stderr, "replay: cannot read directory %s: %s\n", argv[1], strerror(errno));
        return EXIT_FAILURE;
    }
    for (int i = 0; i < n_names; i++) {
        uint8_t *data = NULL;
        size_t size = 0;
        int rc = names[i]->d_name[0] == '.' ? 0 : read_input(argv[1], names[i]->d_name, &data, &size);

        if (rc < 0)
            status = EXIT_FAILURE;
        if (rc == 1) {
            LLVMFuzzerTestOneInput(data, size);
            n_inputs++;
            n_bytes += size;
        }
        free(data);
        free(names[i]);
    }
    free(names);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: no inputs in %s: the corpus is missing\n", argv[1]);
        return EXIT_FAILURE;
    }
    printf("replayed %zu inputs (%zu bytes) from %s\n", n_inputs, n_bytes, argv[1]);
    return status;
}
