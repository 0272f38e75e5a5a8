/* status.c — the thread-local error message behind cnn_last_error(), and cnn_log_debug. Only
 * formats and stores messages: it never exits or aborts, and prints nothing but the debug lines
 * CNN_DEBUG=1 asks for (on stderr). */
#include "internal.h"

#include <stdatomic.h>

static _Thread_local char g_msg[1024];

const char *cnn_last_error(void) { return g_msg; }

void cnn_clear_error(void) { g_msg[0] = '\0'; }

cnn_status cnn_error(cnn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

cnn_status cnn_error_prefix(cnn_status s, const char *fmt, ...)
{
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    /* Truncation is acceptable: the start of a message says the most. */
    size_t n = strlen(prefix);
    memcpy(g_msg, prefix, n);
    g_msg[n] = ':';
    g_msg[n + 1] = ' ';
    size_t room = sizeof g_msg - n - 3, len = strnlen(old, room);
    memcpy(g_msg + n + 2, old, len);
    g_msg[n + 2 + len] = '\0';
    return s;
}

const char *cnn_status_name(cnn_status s)
{
    switch (s) {
    case CNN_OK: return "CNN_OK";
    case CNN_ERR_INVALID_ARG: return "CNN_ERR_INVALID_ARG";
    case CNN_ERR_SHAPE: return "CNN_ERR_SHAPE";
    case CNN_ERR_OUT_OF_MEMORY: return "CNN_ERR_OUT_OF_MEMORY";
    case CNN_ERR_IO: return "CNN_ERR_IO";
    case CNN_ERR_FORMAT: return "CNN_ERR_FORMAT";
    case CNN_ERR_DEVICE: return "CNN_ERR_DEVICE";
    case CNN_ERR_UNSUPPORTED: return "CNN_ERR_UNSUPPORTED";
    case CNN_ERR_NOT_FOUND: return "CNN_ERR_NOT_FOUND";
    case CNN_ERR_CUDA: return "CNN_ERR_CUDA";
    case CNN_ERR_INTERNAL: return "CNN_ERR_INTERNAL";
    }
    return "CNN_ERR_UNKNOWN";
}

const char *cnn_version(void) { return CNN_VERSION; }

/* Debug log: silent unless the environment sets CNN_DEBUG=1 (then one line on stderr). Used
 * for facts a user may want when tuning, such as a backend falling back to another. */
void cnn_log_debug(const char *fmt, ...)
{
    static atomic_int state = -1; /* read once; racing threads store the same value */
    int enabled = atomic_load_explicit(&state, memory_order_relaxed);
    if (enabled < 0) {
        const char *v = getenv("CNN_DEBUG");
        enabled = v && *v && strcmp(v, "0") != 0;
        atomic_store_explicit(&state, enabled, memory_order_relaxed);
    }
    if (!enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("libcnncuda debug: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
