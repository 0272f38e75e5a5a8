/* augment.c — the per-sample pipeline of every dataset (decode, geometry, affine, flip, jitter,
 * normalise into CHW floats) and the dataset accessors. Randomness comes only from Philox(seed;
 * epoch, index, draw), never from a context or a global; it knows nothing of batches or threads. */
#include "dataset.h"

#include "philox.h"

#include <math.h>

/* ---- dataset accessors ------------------------------------------------------------------- */
cnn_dataset *cnn_dataset_alloc(const cnn_dataset_ops *ops)
{
    cnn_dataset *ds = calloc(1, sizeof *ds);
    if (ds) ds->ops = ops;
    return ds;
}

void cnn_dataset_warn(cnn_dataset *ds, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **w = realloc(ds->warnings, (size_t)(ds->n_warnings + 1) * sizeof *w);
    if (!w) return;
    ds->warnings = w;
    if ((w[ds->n_warnings] = strdup(msg)) != NULL) ds->n_warnings++;
}

cnn_status cnn_data_strdup(const char *s, const char *what, char **out)
{
    *out = strdup(s);
    return *out ? CNN_OK : cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
}

void cnn_dataset_destroy(cnn_dataset **pds)
{
    if (!pds || !*pds) return;
    cnn_dataset *ds = *pds;
    if (ds->ops && ds->ops->destroy_impl) ds->ops->destroy_impl(ds->impl);
    if (ds->class_names)
        for (int c = 0; c < ds->num_classes; c++) free(ds->class_names[c]);
    free(ds->class_names);
    free(ds->labels);
    for (int i = 0; i < ds->n_warnings; i++) free(ds->warnings[i]);
    free(ds->warnings);
    free(ds);
    *pds = NULL;
}

int64_t cnn_dataset_size(const cnn_dataset *ds) { return ds ? ds->n : 0; }
int cnn_dataset_num_classes(const cnn_dataset *ds) { return ds ? ds->num_classes : 0; }
int cnn_dataset_channels(const cnn_dataset *ds) { return ds ? ds->channels : 0; }
int cnn_dataset_num_warnings(const cnn_dataset *ds) { return ds ? ds->n_warnings : 0; }

const char *cnn_dataset_class_name(const cnn_dataset *ds, int i)
{
    return ds && i >= 0 && i < ds->num_classes ? ds->class_names[i] : NULL;
}

int64_t cnn_dataset_label(const cnn_dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->labels[i] : -1;
}

int cnn_dataset_native_size(const cnn_dataset *ds, int *height, int *width)
{
    if (height) *height = ds ? ds->native_h : 0;
    if (width) *width = ds ? ds->native_w : 0;
    return ds && ds->native_h == ds->native_w ? ds->native_h : 0;
}

void cnn_dataset_mean_std(const cnn_dataset *ds, float mean[3], float std[3])
{
    for (int c = 0; c < 3; c++) {
        mean[c] = ds ? ds->mean[c] : 0.0f;
        std[c] = ds ? ds->std[c] : 1.0f;
    }
}

const char *cnn_dataset_sample_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n)
{
    if (!buf || n == 0) return buf;
    if (!ds || i < 0 || i >= ds->n) snprintf(buf, n, "(no sample %lld)", (long long)i);
    else ds->ops->sample_name(ds, i, buf, n);
    return buf;
}

const char *cnn_dataset_warning(const cnn_dataset *ds, int i)
{
    return ds && i >= 0 && i < ds->n_warnings ? ds->warnings[i] : NULL;
}

/* ---- transforms -------------------------------------------------------------------------- */
cnn_transform cnn_transform_default(const cnn_dataset *ds, bool train, int img_size)
{
    cnn_transform t = {0};
    t.img_size = img_size;
    t.train = train;
    t.geometry = ds && ds->native_h > 0 ? CNN_GEOM_PAD_OR_RESIZE : CNN_GEOM_CROP;
    t.scale[0] = 0.08f;
    t.scale[1] = 1.0f;
    t.ratio[0] = 3.0f / 4.0f;
    t.ratio[1] = 4.0f / 3.0f;
    t.eval_crop_ratio = 0.875f;
    t.hflip_p = train && t.geometry == CNN_GEOM_CROP ? 0.5f : 0.0f;
    cnn_dataset_mean_std(ds, t.mean, t.std);
    return t;
}

int cnn_transform_output_size(const cnn_dataset *ds, const cnn_transform *t)
{
    if (!ds || !t) return cnn_error(CNN_ERR_INVALID_ARG, "transform: NULL dataset or transform"), 0;
    if (t->img_size > 0) return t->img_size;
    if (ds->native_h > 0 && ds->native_h == ds->native_w) return ds->native_h;
    cnn_error(CNN_ERR_INVALID_ARG, "transform: img_size is 0 and the dataset has no native square "
                                   "size (%dx%d)", ds->native_h, ds->native_w);
    return 0;
}

cnn_status cnn_transform_check(const cnn_dataset *ds, const cnn_transform *t)
{
    CNN_CHECK(t->img_size >= 0 && t->img_size <= 16384, CNN_ERR_INVALID_ARG,
              "transform: img_size %d not in [0, 16384] (0: the dataset's own size)",
              t->img_size);
    CNN_CHECK(t->geometry == CNN_GEOM_CROP || t->geometry == CNN_GEOM_PAD_OR_RESIZE,
              CNN_ERR_INVALID_ARG, "transform: unknown geometry %d", (int)t->geometry);
    /* Every number finite, as torchvision's transforms refuse others: an infinite angle or
     * scale would give a blank image rather than an error. */
    const struct { const char *name; float v; } nums[] = {
        {"scale[0]", t->scale[0]}, {"scale[1]", t->scale[1]}, {"ratio[0]", t->ratio[0]},
        {"ratio[1]", t->ratio[1]}, {"eval_crop_ratio", t->eval_crop_ratio},
        {"hflip_p", t->hflip_p}, {"brightness", t->brightness}, {"contrast", t->contrast},
        {"saturation", t->saturation}, {"affine_degrees", t->affine_degrees},
        {"affine_translate", t->affine_translate}, {"affine_scale[0]", t->affine_scale[0]},
        {"affine_scale[1]", t->affine_scale[1]}, {"erase_p", t->erase_p},
        {"erase_scale[0]", t->erase_scale[0]}, {"erase_scale[1]", t->erase_scale[1]},
        {"erase_ratio[0]", t->erase_ratio[0]}, {"erase_ratio[1]", t->erase_ratio[1]},
        {"mean[0]", t->mean[0]}, {"mean[1]", t->mean[1]}, {"mean[2]", t->mean[2]},
        {"std[0]", t->std[0]}, {"std[1]", t->std[1]}, {"std[2]", t->std[2]}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        CNN_CHECK(isfinite(nums[i].v), CNN_ERR_INVALID_ARG, "transform: %s is %g, not a finite "
                  "number", nums[i].name, nums[i].v);
    CNN_CHECK(t->scale[0] > 0 && t->scale[0] <= t->scale[1] && t->ratio[0] > 0 &&
                  t->ratio[0] <= t->ratio[1],
              CNN_ERR_INVALID_ARG, "transform: bad scale (%g, %g) or ratio (%g, %g)",
              t->scale[0], t->scale[1], t->ratio[0], t->ratio[1]);
    CNN_CHECK(t->eval_crop_ratio > 0 && t->eval_crop_ratio <= 1, CNN_ERR_INVALID_ARG,
              "transform: eval_crop_ratio %g not in (0, 1]", t->eval_crop_ratio);
    const int S = cnn_transform_output_size(ds, t);
    CNN_CHECK(S <= 0 || S / (double)t->eval_crop_ratio <= 65536, CNN_ERR_INVALID_ARG,
              "transform: eval_crop_ratio %g would resize to %g pixels before the %d-pixel "
              "crop (at most 65536)", t->eval_crop_ratio, S / (double)t->eval_crop_ratio, S);
    CNN_CHECK(t->hflip_p >= 0 && t->hflip_p <= 1, CNN_ERR_INVALID_ARG,
              "transform: hflip_p %g not in [0, 1]", t->hflip_p);
    CNN_CHECK(t->brightness >= 0 && t->contrast >= 0 && t->saturation >= 0 &&
                  t->affine_degrees >= 0 && t->affine_translate >= 0 && t->affine_translate <= 1,
              CNN_ERR_INVALID_ARG, "transform: negative jitter or affine parameter");
    CNN_CHECK((t->affine_scale[0] == 0 && t->affine_scale[1] == 0) ||
                  (t->affine_scale[0] > 0 && t->affine_scale[0] <= t->affine_scale[1]),
              CNN_ERR_INVALID_ARG, "transform: bad affine_scale (%g, %g)", t->affine_scale[0],
              t->affine_scale[1]);
    CNN_CHECK(t->erase_p >= 0 && t->erase_p <= 1, CNN_ERR_INVALID_ARG,
              "transform: erase_p %g not in [0, 1]", t->erase_p);
    CNN_CHECK((t->erase_scale[0] == 0 && t->erase_scale[1] == 0) ||
                  (t->erase_scale[0] > 0 && t->erase_scale[0] <= t->erase_scale[1] &&
                   t->erase_scale[1] <= 1),
              CNN_ERR_INVALID_ARG, "transform: bad erase_scale (%g, %g): want 0 < lo <= hi <= 1",
              t->erase_scale[0], t->erase_scale[1]);
    CNN_CHECK((t->erase_ratio[0] == 0 && t->erase_ratio[1] == 0) ||
                  (t->erase_ratio[0] > 0 && t->erase_ratio[0] <= t->erase_ratio[1]),
              CNN_ERR_INVALID_ARG, "transform: bad erase_ratio (%g, %g)", t->erase_ratio[0],
              t->erase_ratio[1]);
    for (int c = 0; c < ds->channels; c++)
        CNN_CHECK(t->std[c] > 0, CNN_ERR_INVALID_ARG, "transform: std[%d] = %g must be > 0", c,
                  t->std[c]);
    return CNN_OK;
}

/* The sample's own random stream: 256 Philox counters (1024 draws) per (epoch, index). */
typedef struct sample_rng {
    uint64_t key, base, i;
} sample_rng;

static float rng_uniform(sample_rng *r, float lo, float hi)
{
    return cnn_uniform_below(lo + (hi - lo) * cnn_philox_uniform(r->key, r->base, r->i++), lo, hi);
}

/* torchvision RandomResizedCrop.get_params: crop box (top, left, h, w). */
static void random_resized_crop_box(sample_rng *r, int H, int W, const cnn_transform *t, int box[4])
{
    double area = (double)H * W, lr0 = log(t->ratio[0]), lr1 = log(t->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * rng_uniform(r, t->scale[0], t->scale[1]);
        double aspect = exp(lr0 + (lr1 - lr0) * rng_uniform(r, 0, 1));
        int w = (int)lrint(sqrt(target * aspect)), h = (int)lrint(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            int top = (int)(rng_uniform(r, 0, 1) * (H - h + 1));
            int left = (int)(rng_uniform(r, 0, 1) * (W - w + 1));
            box[0] = top < H - h ? top : H - h;
            box[1] = left < W - w ? left : W - w;
            box[2] = h;
            box[3] = w;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < t->ratio[0]) h = (int)lrint(w / t->ratio[0]);
    else if (in_ratio > t->ratio[1]) w = (int)lrint(h * t->ratio[1]);
    box[0] = (H - h) / 2;
    box[1] = (W - w) / 2;
    box[2] = h;
    box[3] = w;
}

/* Resizes the (h, w) window at (top, left) of img into dst (oh x ow x C bytes), as torchvision
 * crops and then resizes. */
static cnn_status resize_window(const cnn_image_u8 *img, int top, int left, int h, int w,
                                unsigned char *dst, int oh, int ow)
{
    size_t stride = (size_t)img->w * img->channels;
    return cnn_image_resample(img->pix + (size_t)top * stride + (size_t)left * img->channels, h,
                              w, stride, img->channels, NULL, dst, oh, ow);
}

/* Bytes (S, S, C) -> floats (C, S, S) in [0, 1]. */
static void to_chw(const unsigned char *hwc, int S, int C, float *out)
{
    for (int c = 0; c < C; c++)
        for (int p = 0; p < S * S; p++)
            out[(size_t)c * S * S + p] = hwc[(size_t)p * C + c] / 255.0f;
}

/* The geometric step: decoded image -> out (C, S, S) in [0, 1]. */
static cnn_status apply_geometry(const cnn_image_u8 *img, const cnn_transform *t, int S,
                                 sample_rng *r, float *out)
{
    int C = img->channels, H = img->h, W = img->w;
    size_t plane = (size_t)S * S;
    if (t->geometry == CNN_GEOM_PAD_OR_RESIZE && H <= S && W <= S && S - H <= 8 && S - W <= 8 &&
        (S - H) % 2 == 0 && (S - W) % 2 == 0) {
        int py = (S - H) / 2, px = (S - W) / 2;
        memset(out, 0, plane * C * sizeof *out);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    out[c * plane + (size_t)(y + py) * S + x + px] =
                        img->pix[((size_t)y * W + x) * C + c] / 255.0f;
        return CNN_OK;
    }
    cnn_status st = CNN_OK;
    unsigned char *tmp = malloc(plane * C);
    if (!tmp) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "transform: no memory for %dx%d", S, S);
    if (t->geometry == CNN_GEOM_PAD_OR_RESIZE) {
        CNN_TRYG(resize_window(img, 0, 0, H, W, tmp, S, S));
    } else if (t->train) {
        int box[4];
        random_resized_crop_box(r, H, W, t, box);
        CNN_TRYG(resize_window(img, box[0], box[1], box[2], box[3], tmp, S, S));
    } else {
        /* Resize(round(S / ratio)) on the shorter side, then CenterCrop(S), as torchvision:
         * one resample of the part of the image that the crop keeps. */
        int64_t R = lrint(S / (double)t->eval_crop_ratio); /* <= 65536: cnn_transform_check */
        int64_t nh = H <= W ? R : (int64_t)((double)R * H / W);
        int64_t nw = H <= W ? (int64_t)((double)R * W / H) : R;
        if (nh < S || nw < S) {
            st = cnn_error(CNN_ERR_INTERNAL, "transform: resized %lldx%lld smaller than crop %d",
                           (long long)nw, (long long)nh, S);
            goto done;
        }
        int64_t top = lrint((nh - S) / 2.0), left = lrint((nw - S) / 2.0);
        /* Products before quotients, so that a crop reaching the edge ends exactly there. */
        double box[4] = {(double)top * H / nh, (double)left * W / nw, (double)(top + S) * H / nh,
                         (double)(left + S) * W / nw};
        CNN_TRYG(cnn_image_resample(img->pix, H, W, (size_t)W * C, C, box, tmp, S, S));
    }
    to_chw(tmp, S, C, out);
done:
    free(tmp);
    return st;
}

/* torchvision RandomAffine (no shear) as it transforms a PIL image: nearest neighbour (its
 * default; PIL takes the source pixel whose cell holds the mapped centre), zero fill, centre at
 * the image's middle, a positive angle turning the picture clockwise (F.affine's sense). Checked
 * against torchvision 0.14 + PIL 9.4 on a 16x16 ramp for five (angle, shift, scale) sets: every
 * pixel equal, but for two ties at exactly half a pixel at 45 degrees. */
static cnn_status random_affine(sample_rng *r, const cnn_transform *t, int S, int C, float *img)
{
    float angle = rng_uniform(r, -t->affine_degrees, t->affine_degrees);
    float maxd = t->affine_translate * S;
    float tx = rintf(rng_uniform(r, -maxd, maxd)), ty = rintf(rng_uniform(r, -maxd, maxd));
    float sc = t->affine_scale[0] > 0 ? rng_uniform(r, t->affine_scale[0], t->affine_scale[1]) : 1;
    size_t plane = (size_t)S * S;
    float *src = malloc(plane * C * sizeof *src);
    if (!src) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "transform: no memory for affine");
    memcpy(src, img, plane * C * sizeof *src);
    double th = -angle * M_PI / 180.0, cs = cos(th) / sc, sn = sin(th) / sc, mid = (S - 1) / 2.0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            /* Inverse map: the source point of output pixel (x, y), then its nearest pixel
             * (pixel centres at whole numbers: PIL's floor of the cell coordinate). */
            double ex = x - mid - tx, ey = y - mid - ty;
            double sx = cs * ex - sn * ey + mid, sy = sn * ex + cs * ey + mid;
            double fx = floor(sx + 0.5), fy = floor(sy + 0.5);
            bool inside = fx >= 0 && fy >= 0 && fx < S && fy < S;
            size_t at = inside ? (size_t)fy * S + (size_t)fx : 0;
            for (int c = 0; c < C; c++)
                img[c * plane + (size_t)y * S + x] = inside ? src[c * plane + at] : 0.0f;
        }
    free(src);
    return CNN_OK;
}

static float clamp01(float v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

/* torchvision ColorJitter (no hue): factors drawn in [max(0, 1-f), 1+f], applied in a random
 * order; contrast blends with the mean gray level, saturation with the pixel's gray. */
static void color_jitter(sample_rng *r, const cnn_transform *t, int S, int C, float *img)
{
    int order[3] = {0, 1, 2};
    for (int i = 2; i > 0; i--) {
        int j = (int)(rng_uniform(r, 0, 1) * (i + 1));
        if (j > i) j = i;
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    const float amount[3] = {t->brightness, t->contrast, t->saturation};
    float factor[3];
    for (int k = 0; k < 3; k++)
        factor[k] = amount[k] > 0 ? rng_uniform(r, fmaxf(0, 1 - amount[k]), 1 + amount[k]) : 1;
    size_t plane = (size_t)S * S, n = plane * C;
    for (int s = 0; s < 3; s++) {
        int k = order[s];
        float f = factor[k];
        if (amount[k] <= 0) continue;
        if (k == 0) {
            for (size_t p = 0; p < n; p++) img[p] = clamp01(img[p] * f);
        } else if (k == 1) {
            double sum = 0;
            for (size_t p = 0; p < plane; p++)
                sum += C == 3 ? 0.299f * img[p] + 0.587f * img[plane + p] +
                                    0.114f * img[2 * plane + p]
                              : img[p];
            float m = (float)(sum / plane);
            for (size_t p = 0; p < n; p++) img[p] = clamp01(f * img[p] + (1 - f) * m);
        } else if (C == 3) {
            for (size_t p = 0; p < plane; p++) {
                float g = 0.299f * img[p] + 0.587f * img[plane + p] + 0.114f * img[2 * plane + p];
                for (int c = 0; c < 3; c++)
                    img[c * plane + p] = clamp01(f * img[c * plane + p] + (1 - f) * g);
            }
        }
    }
}

/* torchvision RandomErasing with value 0, on the normalised image: up to 10 tries for a box
 * (h, w) = (round(sqrt(area * aspect)), round(sqrt(area / aspect))) inside the image, placed
 * uniformly; no box found, no change. */
static void random_erase(sample_rng *r, const cnn_transform *t, int S, int C, float *img)
{
    if (!(rng_uniform(r, 0, 1) < t->erase_p)) return;
    const bool dscale = t->erase_scale[1] == 0, dratio = t->erase_ratio[1] == 0;
    const float s0 = dscale ? 0.02f : t->erase_scale[0], s1 = dscale ? 0.33f : t->erase_scale[1];
    const float lr0 = logf(dratio ? 0.3f : t->erase_ratio[0]);
    const float lr1 = logf(dratio ? 3.3f : t->erase_ratio[1]);
    const float area = (float)S * (float)S;
    for (int attempt = 0; attempt < 10; attempt++) {
        const float a = area * rng_uniform(r, s0, s1), aspect = expf(rng_uniform(r, lr0, lr1));
        /* Compared before the conversion: an extreme ratio gives sides past INT_MAX, or inf. */
        const float hf = rintf(sqrtf(a * aspect)), wf = rintf(sqrtf(a / aspect));
        if (!(hf < (float)S && wf < (float)S)) continue;
        const int h = (int)hf, w = (int)wf;
        int top = (int)(rng_uniform(r, 0, 1) * (float)(S - h + 1));
        int left = (int)(rng_uniform(r, 0, 1) * (float)(S - w + 1));
        if (top > S - h) top = S - h;
        if (left > S - w) left = S - w;
        for (int c = 0; c < C; c++)
            for (int y = top; y < top + h; y++)
                memset(img + ((size_t)c * S + y) * S + left, 0, (size_t)w * sizeof *img);
        return;
    }
}

cnn_status cnn_dataset_get(const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                           uint64_t seed, int64_t epoch, float *out, int64_t *label)
{
    bool bad_sample = false;
    return cnn_dataset_fetch(ds, i, t, seed, epoch, out, label, &bad_sample);
}

cnn_status cnn_dataset_fetch(const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                             uint64_t seed, int64_t epoch, float *out, int64_t *label,
                             bool *bad_sample)
{
    *bad_sample = false;
    CNN_CHECK(ds && t && out, CNN_ERR_INVALID_ARG, "dataset_get: NULL dataset, transform or out");
    CNN_CHECK(i >= 0 && i < ds->n, CNN_ERR_INVALID_ARG,
              "dataset_get: index %lld out of range [0, %lld)", (long long)i, (long long)ds->n);
    CNN_CHECK(epoch >= 0 && epoch < ((int64_t)1 << 24), CNN_ERR_INVALID_ARG,
              "dataset_get: epoch %lld out of range", (long long)epoch);
    CNN_TRY(cnn_transform_check(ds, t));
    int S = cnn_transform_output_size(ds, t);
    if (S <= 0) return CNN_ERR_INVALID_ARG;
    cnn_image_u8 img = {0};
    bool process_fault = false;
    cnn_status st = ds->ops->decode(ds, i, &img, &process_fault);
    if (st != CNN_OK) {
        *bad_sample = (st == CNN_ERR_IO || st == CNN_ERR_FORMAT) && !process_fault;
        return st;
    }
    /* The seed tagged, as the loader's shuffle is: the training tool seeds the context's stream
     * (weights, dropout) with the same number, and an untagged key made sample i's first epoch
     * draw the words of that stream's counters 256 i on (AlexNet's flips followed the signs of
     * its initial weights). */
    sample_rng r = {seed ^ CNN_AUGMENT_TAG, cnn_augment_counter(epoch, i), 0};
    int C = img.channels;
    size_t plane = (size_t)S * S;
    st = apply_geometry(&img, t, S, &r, out);
    if (img.owned) free(img.pix);
    if (st != CNN_OK) {
        char name[512];
        cnn_dataset_sample_name(ds, i, name, sizeof name);
        return cnn_error_prefix(st, "dataset_get: %s", name);
    }
    if (t->train) {
        if (t->affine_degrees > 0 || t->affine_translate > 0 || t->affine_scale[0] > 0)
            CNN_TRY(random_affine(&r, t, S, C, out));
        if (t->hflip_p > 0 && rng_uniform(&r, 0, 1) < t->hflip_p)
            for (int c = 0; c < C; c++)
                for (int y = 0; y < S; y++) {
                    float *row = out + c * plane + (size_t)y * S;
                    for (int a = 0, b = S - 1; a < b; a++, b--) {
                        float v = row[a];
                        row[a] = row[b];
                        row[b] = v;
                    }
                }
        if (t->brightness > 0 || t->contrast > 0 || t->saturation > 0)
            color_jitter(&r, t, S, C, out);
    }
    /* (x - mean) / std, as torchvision's Normalize: its bits, and a tiny (subnormal) std gives
     * what the quotient gives, where a reciprocal 1 / std was already inf. */
    for (int c = 0; c < C; c++) {
        const float m = t->mean[c], sd = t->std[c];
        for (size_t p = 0; p < plane; p++) out[c * plane + p] = (out[c * plane + p] - m) / sd;
    }
    if (t->train && t->erase_p > 0) random_erase(&r, t, S, C, out);
    if (label) *label = ds->labels[i];
    return CNN_OK;
}
