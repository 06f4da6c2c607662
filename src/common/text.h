/*
 * text.h — text read from a target or a capture, made fit to print.
 *
 * Owns: text_one_line, which every command line shown to the user goes
 * through: a program's argv (or a capture's record of it) may hold newlines
 * (`python -c` code) or terminal escape sequences, and the user's terminal
 * should get one plain line.
 */
#ifndef PYROMETER_TEXT_H
#define PYROMETER_TEXT_H

#include <string.h>

/* Turn s's control characters (below 0x20, and DEL) into spaces and drop
 * trailing spaces, in place. */
static inline void text_one_line(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = ' ';
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
}

#endif
