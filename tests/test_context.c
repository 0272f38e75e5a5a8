/* test_context.c — contexts as cnn_context_create documents them: the settings a new context
 * reads from the environment (CNN_BACKEND, CNN_TF32, CNN_DETERMINISTIC, where 0 is off), a CPU
 * context is cpu:0 whatever index it is given, and destroying the current one leaves none. */
#include "test.h"

/* A new CPU context made while the variable `name` holds `value` (NULL: unset); the variable's
 * old value is put back. NULL when creation fails. */
static cnn_context *context_under_env(const char *name, const char *value)
{
    const char *old = getenv(name);
    char *saved = old ? strdup(old) : NULL;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
    cnn_context *c = NULL;
    cnn_status st = cnn_context_create(CNN_CPU, &c);
    if (saved) setenv(name, saved, 1);
    else unsetenv(name);
    free(saved);
    return st == CNN_OK ? c : NULL;
}

typedef struct { const char *value; bool on; } flag_case;

/* CNN_TF32 and CNN_DETERMINISTIC: "1" turns the mode on; "0", "" and no variable leave it off
 * (one bug read any set value, "0" included, as on). */
TEST(context_reads_its_flags_from_the_environment)
{
    static const char *const names[2] = {"CNN_TF32", "CNN_DETERMINISTIC"};
    static const flag_case cases[4] = {{"1", true}, {"0", false}, {"", false}, {NULL, false}};
    cnn_context *mine = cnn_context_current();
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < 4; k++) {
            cnn_context *c = context_under_env(names[f], cases[k].value);
            REQUIRE(c);
            cnn_context_set_current(c);
            bool on = f == 0 ? cnn_is_tf32() : cnn_is_deterministic();
            cnn_context_set_current(mine);
            cnn_context_destroy(&c);
            if (on != cases[k].on)
                cnn_test_fail(__FILE__, __LINE__, "%s=%s gave %s", names[f],
                              cases[k].value ? cases[k].value : "(unset)", on ? "on" : "off");
        }
}

/* CNN_BACKEND picks each of cudnn, cuda and cpu by name; anything else leaves AUTO. */
TEST(context_reads_its_backend_from_the_environment)
{
    static const char *const values[5] = {"cudnn", "cuda", "cpu", "gpu", NULL};
    static const cnn_backend want[5] = {CNN_BACKEND_CUDNN, CNN_BACKEND_CUDA, CNN_BACKEND_CPU,
                                        CNN_BACKEND_AUTO, CNN_BACKEND_AUTO};
    cnn_context *mine = cnn_context_current();
    for (int k = 0; k < 5; k++) {
        cnn_context *c = context_under_env("CNN_BACKEND", values[k]);
        REQUIRE(c);
        cnn_context_set_current(c);
        cnn_backend got = cnn_get_backend();
        cnn_context_set_current(mine);
        cnn_context_destroy(&c);
        if (got != want[k])
            cnn_test_fail(__FILE__, __LINE__, "CNN_BACKEND=%s gave backend %d, not %d",
                          values[k] ? values[k] : "(unset)", (int)got, (int)want[k]);
    }
}

/* cnn_set_backend takes each backend and ignores a value outside the enum, which the ops
 * would otherwise take for "hand-written kernels". */
TEST(context_backend_outside_the_enum_is_ignored)
{
    cnn_backend before = cnn_get_backend();
    cnn_set_backend(CNN_BACKEND_CUDNN);
    cnn_set_backend((cnn_backend)7);
    CHECK(cnn_get_backend() == CNN_BACKEND_CUDNN);
    cnn_set_backend((cnn_backend)-1);
    CHECK(cnn_get_backend() == CNN_BACKEND_CUDNN);
    cnn_set_backend(CNN_BACKEND_CPU);
    CHECK(cnn_get_backend() == CNN_BACKEND_CPU);
    cnn_set_backend(before);
    CHECK(cnn_get_backend() == before);
}

/* There is one CPU: a context asked for cpu:3 is on cpu:0, as the tensors it makes are. */
TEST(context_on_the_cpu_is_cpu_0)
{
    cnn_context *mine = cnn_context_current(), *c = NULL;
    CHECK_OK(cnn_context_create((cnn_device){CNN_DEVICE_CPU, 3}, &c));
    REQUIRE(c);
    cnn_context_set_current(c);
    cnn_device d = cnn_current_device();
    cnn_context_set_current(mine);
    cnn_context_destroy(&c);
    CHECK(d.type == CNN_DEVICE_CPU && d.index == 0);
}

/* Destroying the current context makes the thread's own default context current again, not
 * the freed one. */
TEST(destroying_the_current_context_leaves_the_default_current)
{
    cnn_context *mine = cnn_context_current(), *c = NULL;
    cnn_context_set_current(NULL);
    cnn_context *fallback = cnn_context_current(); /* the thread's default, made lazily */
    CHECK_OK(cnn_context_create(CNN_CPU, &c));
    REQUIRE(c);
    cnn_context_set_current(c);
    CHECK(cnn_context_current() == c);
    cnn_context_destroy(&c);
    CHECK(cnn_context_current() == fallback);
    cnn_context_set_current(mine);
}
