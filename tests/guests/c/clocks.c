/* Clocks and randomness (clock_time_get, random_get): prints the realtime clock in whole
 * seconds since the epoch (the test compares it with the host's), whether the monotonic clock
 * moved forward across some work, and whether two 32-byte random reads differ and are not all
 * zero. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <wasi/api.h>

static const char *yes(int b) { return b ? "yes" : "no"; }

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("realtime: %lld\n", (long long)now.tv_sec);

    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile uint64_t x = 1;
    for (uint64_t i = 0; i < 1000000; i++)
        x = x * 6364136223846793005ULL + i;
    clock_gettime(CLOCK_MONOTONIC, &end);
    int later = end.tv_sec > start.tv_sec ||
                (end.tv_sec == start.tv_sec && end.tv_nsec > start.tv_nsec);
    printf("monotonic increases: %s\n", yes(later));

    uint8_t a[32], b[32];
    if (__wasi_random_get(a, sizeof a) || __wasi_random_get(b, sizeof b)) {
        printf("random_get failed\n");
        return 1;
    }
    printf("random differs: %s\n", yes(memcmp(a, b, sizeof a) != 0));
    printf("random nonzero: %s\n", yes(!all_zero(a, sizeof a) && !all_zero(b, sizeof b)));
    return 0;
}
