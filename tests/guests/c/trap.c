/* A trapping guest: prints a line on stdout and one on stderr, then executes the
 * `unreachable` instruction (__builtin_trap) inside deliberately_trap. */
#include <stdio.h>

__attribute__((noinline)) static void deliberately_trap(void) {
    printf("about to trap\n");
    fflush(stdout);
    fprintf(stderr, "trapping now\n");
    __builtin_trap();
}

int main(void) {
    deliberately_trap();
    printf("LEAK: still running after the trap\n");
    return 0;
}
