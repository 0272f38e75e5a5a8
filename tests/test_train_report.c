/* test_train_report.c — the training tool's report (tools/common/train_report.c), tested
 * directly: the per-class table and its macro average against sklearn's classification_report. */
#include "test.h"

#include "../tools/common/train_report.h"

static const char *class_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"a", "b", "c"};
    return names[i];
}

/* The "macro avg" line of the report of e: precision, recall, f1. */
static bool macro_of(const tr_eval *e, double *p, double *r, double *f1)
{
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    if (!f) return false;
    tr_eval_print_report(e, class_name, NULL, f);
    fclose(f);
    const char *m = strstr(buf, "macro avg");
    return m && sscanf(m, "macro avg %lf %lf %lf", p, r, f1) == 3;
}

/* sklearn averages over every class that is a label or a prediction: class 2 below is never a
 * label but is predicted twice, and counts with precision 0 and recall 0. Before, it was left
 * out, and half the predictions being wrong still gave a macro precision of 1. */
TEST(train_report_macro_average_as_sklearn)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    /* y_true [0, 0, 1, 1], y_pred [0, 2, 1, 2] as one-hot logits */
    const float logits[12] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};
    const int64_t labels[4] = {0, 0, 1, 1};
    tr_eval_add(&e, logits, labels, 4, 0.5);
    double p = 0, r = 0, f1 = 0;
    CHECK(macro_of(&e, &p, &r, &f1));
    /* per class: 0: p 1, r 1/2, f1 2/3; 1: the same; 2: p 0, r 0, f1 0. sklearn's
     * classification_report([0, 0, 1, 1], [0, 2, 1, 2]) macro avg: 0.6667 0.3333 0.4444 */
    CHECK_NEAR(p, 2.0 / 3.0, 1e-4);
    CHECK_NEAR(r, 1.0 / 3.0, 1e-4);
    CHECK_NEAR(f1, 4.0 / 9.0, 1e-4);
    /* A class neither a label nor a prediction stays out: only classes 0 and 1 here. */
    tr_eval_free(&e);
    REQUIRE(tr_eval_init(&e, 3));
    const float l2[12] = {1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0};
    tr_eval_add(&e, l2, labels, 4, 0.5);
    CHECK(macro_of(&e, &p, &r, &f1));
    CHECK_NEAR(p, 1.0, 1e-9);
    CHECK_NEAR(r, 1.0, 1e-9);
    CHECK_NEAR(f1, 1.0, 1e-9);
    tr_eval_free(&e);
}
