// libedit's native editline/history API (histedit.h).
//
// el_set(), el_get() and history() are variadic, and Swift cannot call C variadic
// functions, so each call the REPL needs is spelled out below as a small inline
// helper with a fixed signature.
#include <stdio.h>
#include <histedit.h>

/// Prompt callback: returns the prompt text (owned by the caller of el_set).
typedef char *(*devkit_el_prompt_fn)(EditLine *);
/// Editor function added with EL_ADDFN; returns one of the CC_* codes.
typedef unsigned char (*devkit_el_command_fn)(EditLine *, int);
/// Character reader installed with EL_GETCFN: 1 = a character, 0 = EOF, -1 = error.
typedef int (*devkit_el_getc_fn)(EditLine *, wchar_t *);

/// el_init on the process's standard streams (the C globals are awkward from Swift 6).
static inline EditLine *devkit_el_init(const char *program) {
    return el_init(program, stdin, stdout, stderr);
}
static inline int devkit_el_set_prompt(EditLine *el, devkit_el_prompt_fn fn) {
    return el_set(el, EL_PROMPT, fn);
}
static inline int devkit_el_set_editor(EditLine *el, const char *editor) {
    return el_set(el, EL_EDITOR, editor);
}
static inline int devkit_el_set_signal(EditLine *el, int handle) {
    return el_set(el, EL_SIGNAL, handle);
}
static inline int devkit_el_set_getc(EditLine *el, devkit_el_getc_fn fn) {
    return el_set(el, EL_GETCFN, fn);
}
static inline int devkit_el_set_clientdata(EditLine *el, void *data) {
    return el_set(el, EL_CLIENTDATA, data);
}
static inline void *devkit_el_get_clientdata(EditLine *el) {
    void *data = NULL;
    if (el_get(el, EL_CLIENTDATA, &data) != 0) return NULL;
    return data;
}
static inline int devkit_el_add_function(EditLine *el, const char *name, const char *help,
                                         devkit_el_command_fn fn) {
    return el_set(el, EL_ADDFN, name, help, fn);
}
static inline int devkit_el_bind(EditLine *el, const char *key, const char *function) {
    return el_set(el, EL_BIND, key, function, (const char *)NULL);
}
static inline int devkit_el_set_history(EditLine *el, History *h) {
    return el_set(el, EL_HIST, history, h);
}
/// Redraws the prompt and the line being edited (after output was written over it).
static inline int devkit_el_refresh(EditLine *el) {
    return el_set(el, EL_REFRESH);
}
/// 1 if libedit is editing on a terminal, 0 if it reads plain lines (no tty).
static inline int devkit_el_edit_mode(EditLine *el) {
    int mode = 0;
    if (el_get(el, EL_EDITMODE, &mode) != 0) return 0;
    return mode;
}

static inline int devkit_history_set_size(History *h, int size) {
    HistEvent ev;
    return history(h, &ev, H_SETSIZE, size);
}
static inline int devkit_history_set_unique(History *h, int unique) {
    HistEvent ev;
    return history(h, &ev, H_SETUNIQUE, unique);
}
static inline int devkit_history_enter(History *h, const char *line) {
    HistEvent ev;
    return history(h, &ev, H_ENTER, line);
}
static inline int devkit_history_load(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_LOAD, path);
}
/// Writes the history to an already-open stream (the caller controls file mode).
static inline int devkit_history_save_fp(History *h, FILE *fp) {
    HistEvent ev;
    return history(h, &ev, H_SAVE_FP, fp);
}

/// Keeps terminal echo off in the settings libedit restores between lines
/// (`setty -x -echo`): nothing typed is echoed by the tty, only drawn by libedit.
static inline int devkit_el_cooked_mode_without_echo(EditLine *el) {
    return el_set(el, EL_SETTY, "-x", "-echo", (const char *)NULL);
}
