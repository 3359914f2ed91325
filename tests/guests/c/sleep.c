/* Sleeping (poll_oneoff with a clock subscription): nanosleep(50 ms), then one raw
 * __wasi_poll_oneoff on a relative 50 ms monotonic-clock timeout; each measured with the
 * monotonic clock inside the guest. Prints whether at least 50 ms passed, and the event
 * poll_oneoff returned. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <wasi/api.h>

#define WAIT_NS 50000000ULL

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static const char *yes(int b) { return b ? "yes" : "no"; }

int main(void) {
    uint64_t start = now_ns();
    struct timespec wait = {0, WAIT_NS};
    nanosleep(&wait, NULL);
    printf("sleep >= 50ms: %s\n", yes(now_ns() - start >= WAIT_NS));

    __wasi_subscription_t sub;
    memset(&sub, 0, sizeof sub);
    sub.userdata = 42;
    sub.u.tag = __WASI_EVENTTYPE_CLOCK;
    sub.u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    sub.u.u.clock.timeout = WAIT_NS; /* relative: flags stay 0 */
    __wasi_event_t event;
    memset(&event, 0xff, sizeof event);
    __wasi_size_t nevents = 0;
    start = now_ns();
    __wasi_errno_t err = __wasi_poll_oneoff(&sub, &event, 1, &nevents);
    uint64_t elapsed = now_ns() - start;
    printf("poll_oneoff: errno %d\n", err);
    printf("poll_oneoff >= 50ms: %s\n", yes(elapsed >= WAIT_NS));
    printf("events: %u userdata: %llu error: %u type: %s\n", (unsigned)nevents,
           (unsigned long long)event.userdata, (unsigned)event.error,
           event.type == __WASI_EVENTTYPE_CLOCK ? "clock" : "other");
    return 0;
}
