/* Hello world: one fd_write to stdout, then _start returns (exit status 0). */
#include <stdio.h>

int main(void) {
    printf("Hello C!\n");
    return 0;
}
