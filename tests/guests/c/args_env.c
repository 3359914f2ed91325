/* Arguments and environment (args_get, environ_get): prints argv[1..] one per line, then the
 * environment variables whose names start with GUEST_, sorted by name, as NAME=VALUE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        printf("%s\n", argv[i]);
    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    char **vars = calloc(count + 1, sizeof *vars);
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "GUEST_", 6) == 0)
            vars[n++] = *e;
    /* "NAME=VALUE" strings sort by name as long as names are followed by '='. */
    qsort(vars, n, sizeof *vars, by_name);
    for (size_t i = 0; i < n; i++)
        printf("%s\n", vars[i]);
    free(vars);
    return 0;
}
