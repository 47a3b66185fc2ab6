/* Placeholder until the host entry point lands. */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "snailjob-lua: not built yet\n");
    return 1;
}
