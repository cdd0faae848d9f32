/* The program inside pydocklite's embedded "hello" image.
 * build.sh compiles it with `gcc -static -Os -s`, so the image needs no libc. */
#include <unistd.h>
#include <string.h>

static const char message[] =
    "\n"
    "Hello from pydocklite!\n"
    "This message shows that your installation appears to be working correctly.\n"
    "\n"
    "To generate this message, pydocklite took these steps:\n"
    " 1. The pydocklite CLI loaded the \"hello\" image embedded in its own zipapp\n"
    "    into your image store (no registry needed).\n"
    " 2. It prepared a root filesystem from the image's layer and started a\n"
    "    container in user namespaces, without root privileges and without a daemon.\n"
    " 3. The container ran this program, which produced the output you are reading.\n"
    " 4. pydocklite streamed that output to your terminal.\n"
    "\n"
    "To try something more ambitious, run a shell from a registry image with:\n"
    " $ pydocklite run -it busybox sh\n"
    "\n";

int main(void)
{
    const char *p = message;
    size_t left = sizeof(message) - 1;
    while (left > 0) {
        ssize_t n = write(1, p, left);
        if (n <= 0)
            return 1;
        p += n;
        left -= (size_t)n;
    }
    return 0;
}
