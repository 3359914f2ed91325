/* Exit codes (proc_exit): prints "exiting with N" and exits with status N = argv[1]. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: exit CODE\n");
        return 1;
    }
    int code = atoi(argv[1]);
    printf("exiting with %d\n", code);
    exit(code);
}
