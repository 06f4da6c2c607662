/*
 * text.h — text read from a target or a capture, made fit to print.
 *
 * Owns: text_one_line and text_put, which every command line, thread name
 * or frame name printed as text goes through: a program's argv (or a
 * capture's record of it), a thread's name or a code object's file name may
 * hold newlines (`python -c` code) or terminal escape sequences, and the
 * user's terminal should get one plain line.
 */
#ifndef PYROMETER_TEXT_H
#define PYROMETER_TEXT_H

#include <stdio.h>
#include <string.h>

/* Whether c is a control character (below 0x20, or DEL). */
static inline int text_is_control(char c)
{
    return (unsigned char)c < 0x20 || c == 0x7f;
}

/* Turn s's control characters into spaces and drop trailing spaces, in
 * place. */
static inline void text_one_line(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (text_is_control(s[i]))
            s[i] = ' ';
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
}

/* Write s to f with its control characters as spaces. */
static inline void text_put(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(text_is_control(*s) ? ' ' : *s, f);
}

#endif
