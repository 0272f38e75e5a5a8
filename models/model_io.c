/* model_io.c — a model's state to and from safetensors files. Kept apart from model.c so that
 * programs that never touch files do not link the checkpoint code. */
#include "model.h"

cnn_status cnn_model_save(const cnn_model *m, const char *path)
{
    CNN_CHECK(m && path, CNN_ERR_INVALID_ARG, "model_save: NULL argument");
    return cnn_safetensors_save(path, m->state);
}

cnn_status cnn_model_load(cnn_model *m, const char *path, bool strict, cnn_load_report *report)
{
    CNN_CHECK(m && path, CNN_ERR_INVALID_ARG, "model_load: NULL argument");
    cnn_dict *src = NULL;
    CNN_TRY(cnn_safetensors_load(path, &src));
    cnn_status st = cnn_dict_load(m->state, src, strict, report);
    cnn_dict_destroy(&src);
    if (st != CNN_OK) return cnn_error_prefix(st, "%s: loading %s", m->name, path);
    return CNN_OK;
}
