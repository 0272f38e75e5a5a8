/* test_train_opts.c — the training tool's command line (tools/common/train_opts.c), tested
 * in-process: each range check at both sides of its bound, values a field cannot hold, the
 * modes' exclusions, and the folder of a checkpoint path. */
#include "test.h"

#include "../tools/common/train_opts.h"

#define MAX_ARGS 16

/* Parses and validates the words of args (split at spaces) as the tool's command line; false
 * with the reason in err when either refuses them. */
static bool accepts(const char *args, char *err, size_t n)
{
    char buf[2048], *argv[MAX_ARGS + 1] = {"train_imagenet_subset"};
    int argc = 1;
    snprintf(buf, sizeof buf, "%s", args);
    for (char *w = strtok(buf, " "); w && argc < MAX_ARGS; w = strtok(NULL, " ")) argv[argc++] = w;
    argv[argc] = NULL;
    static train_opts o; /* over 8 KB of paths */
    err[0] = 0;
    return tr_opts_parse(&o, argc, argv, err, n) && tr_opts_validate(&o, err, n);
}

/* args must be accepted. */
static void check_accepted(const char *args, int line)
{
    char err[4096];
    if (!accepts(args, err, sizeof err))
        cnn_test_fail(__FILE__, line, "'%s' refused: %s", args, err);
}

/* args must be refused with needle in the reason. */
static void check_refused(const char *args, const char *needle, int line)
{
    char err[4096];
    if (accepts(args, err, sizeof err))
        cnn_test_fail(__FILE__, line, "'%s' accepted, want an error holding '%s'", args, needle);
    else if (!strstr(err, needle))
        cnn_test_fail(__FILE__, line, "'%s': error '%s' does not hold '%s'", args, err, needle);
}

#define ACCEPTED(args) check_accepted(args, __LINE__)
#define REFUSED(args, needle) check_refused(args, needle, __LINE__)

/* Every bound is checked on both sides: the last value in range is taken and the first one
 * past it refused, so that a < written for <= (or the reverse) shows. */
TEST(train_opts_ranges_at_their_bounds)
{
    ACCEPTED("--batch 65536");
    REFUSED("--batch 65537", "--batch must be in [1, 65536]");
    REFUSED("--batch 0", "--batch must be in [1, 65536]");
    ACCEPTED("--optimizer sgd --momentum 0");
    ACCEPTED("--optimizer sgd --momentum 0.999");
    REFUSED("--optimizer sgd --momentum 1", "--momentum must be in [0, 1)");
    /* warm-up must leave the schedule at least one epoch */
    ACCEPTED("--epochs 3 --warmup-epochs 2");
    REFUSED("--epochs 3 --warmup-epochs 3", "--warmup-epochs must be in [0, epochs)");
    ACCEPTED("--label-smoothing 1");
    REFUSED("--label-smoothing 1.001", "--label-smoothing must be in [0, 1]");
    REFUSED("--label-smoothing -0.001", "--label-smoothing must be in [0, 1]");
    /* --hflip 0 turns flipping off (IDX digits must not be mirrored); -1 is the default */
    ACCEPTED("--hflip 0");
    ACCEPTED("--hflip 1");
    ACCEPTED("--hflip -1");
    REFUSED("--hflip -0.5", "--hflip must be -1");
    REFUSED("--hflip 1.5", "--hflip must be -1");
    ACCEPTED("--translate 0.999");
    REFUSED("--translate 1", "--translate must be in [0, 1)");
    ACCEPTED("--rotate 180");
    REFUSED("--rotate 180.01", "--rotate must be in [0, 180]");
    REFUSED("--rotate -1", "--rotate must be in [0, 180]");
    ACCEPTED("--zoom 0.999");
    REFUSED("--zoom 1", "--zoom must be in [0, 1)");
    REFUSED("--zoom -0.1", "--zoom must be in [0, 1)");
    ACCEPTED("--color-jitter 1");
    REFUSED("--color-jitter 1.001", "--color-jitter must be in [0, 1]");
    REFUSED("--color-jitter -0.001", "--color-jitter must be in [0, 1]");
    REFUSED("--eval-only c.safetensors --rotate 10", "--rotate does nothing with --eval-only");
    ACCEPTED("--img-size 4096");
    REFUSED("--img-size 4097", "--img-size must be in [0, 4096]");
    ACCEPTED("--workers 0");
    ACCEPTED("--workers 64");
    REFUSED("--workers 65", "--workers must be in [0, 64]");
    ACCEPTED("--seed 0");
    REFUSED("--seed -1", "--seed must be >= 0");
    ACCEPTED("--stop-after 0");
    REFUSED("--stop-after -1", "--stop-after must be >= 0");
    ACCEPTED("--early-stop 0");
    REFUSED("--early-stop -1", "--early-stop must be >= 0");
    REFUSED("--limit-val -1", "--limit-train/--limit-val must be >= 0");
}

/* --device: auto, cpu, cuda (cuda:0) or cuda:N; nothing else, whichever devices exist (the
 * tool says at start whether the one named is there). */
TEST(train_opts_device_names)
{
    ACCEPTED("--device auto");
    ACCEPTED("--device cpu");
    ACCEPTED("--device cuda");
    ACCEPTED("--device cuda:0");
    ACCEPTED("--device cuda:7");
    ACCEPTED("--device cuda:999");
    const char *bad[] = {"cuda:", "cuda:x", "cuda:-1", "cuda:1x", "cuda:1000", "cuda1", "gpu",
                         "CUDA", "cuda:+1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[64];
        snprintf(args, sizeof args, "--device %s", bad[i]);
        REFUSED(args, "--device must be auto, cpu, cuda or cuda:N");
    }
    CHECK(tr_device_index("cuda") == 0 && tr_device_index("cuda:12") == 12);
    CHECK(tr_device_index("cpu") == -1 && tr_device_index("auto") == -1);
}

/* A value the field cannot hold is refused by the parser, not wrapped, cut or taken as
 * infinite: 2^32 + 1 epochs would become 1 in an int, "inf" passes "--lr must be > 0", and NaN
 * passes every range check written as "bad if x < lo || x >= hi". */
TEST(train_opts_values_a_field_cannot_hold)
{
    REFUSED("--epochs 4294967297", "--epochs: bad value '4294967297'");
    REFUSED("--batch 2147483648", "--batch: bad value");
    REFUSED("--lr inf", "--lr: bad value 'inf'");
    REFUSED("--optimizer sgd --momentum nan", "--momentum: bad value 'nan'");
    REFUSED("--label-smoothing nan", "--label-smoothing: bad value");
    /* --optimizer is a 16-byte field: 15 characters and the NUL fit, 16 do not (they would
     * run into the next field). */
    REFUSED("--optimizer abcdefghijklmno", "--optimizer must be sgd, adam or adamw");
    REFUSED("--optimizer abcdefghijklmnop", "--optimizer: bad value 'abcdefghijklmnop' (too "
            "long, over 15 characters");
    /* Each refusal says why: a valid number a float cannot hold is not "bad" as text. */
    REFUSED("--lr 1e-40", "--lr: bad value '1e-40' (too close to 0 for a float; expected LR)");
    REFUSED("--lr 1e39", "--lr: bad value '1e39' (too large for a float");
    REFUSED("--lr 0.1x", "--lr: bad value '0.1x' (not a number");
    REFUSED("--epochs 4294967297", "(out of range; expected N)");
    REFUSED("--epochs 3.5", "(not an integer; expected N)");
    REFUSED("--tf32=maybe", "--tf32: bad value 'maybe' (not on or off; expected on|off)");
    /* A value too long for its field is named by its first 60 characters, so that the reason
     * still fits the message. */
    char args[1200] = "--checkpoint-dir ";
    memset(args + strlen(args), 'y', 1100);
    REFUSED(args, "--checkpoint-dir: bad value 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
            "yyyyyyyyyyyyyyyyyyyy...' (too long, over 1023 characters; expected DIR)");
}

/* An option that takes a value does not take the next option as it, as argparse: once
 * "--checkpoint-dir --strict" trained without --strict into a folder named "--strict". A value
 * that begins with "--" is written --name=--value; a negative number has one dash. */
TEST(train_opts_an_option_is_not_the_value_of_the_one_before)
{
    REFUSED("--checkpoint-dir --strict", "--checkpoint-dir needs a value (DIR), not the option "
            "'--strict'");
    REFUSED("--checkpoint-dir --tf32", "not the option '--tf32'");
    REFUSED("--eval-only --limit-val=64", "--eval-only needs a value (PATH), not the option "
            "'--limit-val=64'");
    REFUSED("--epochs -h", "--epochs needs a value (N), not the option '-h'");
    REFUSED("--epochs", "--epochs needs a value (N)");
    ACCEPTED("--checkpoint-dir=--runs");
    ACCEPTED("--hflip -1 --translate 0");
}

/* The modes are exclusive, and each refuses what would do nothing in it. */
TEST(train_opts_modes_refuse_what_they_ignore)
{
    REFUSED("--pretrained w.safetensors --eval-only c.safetensors",
            "--pretrained starts a new run");
    REFUSED("--pretrained w.safetensors --predict x.png --checkpoint c.safetensors",
            "--pretrained starts a new run");
    REFUSED("--eval-only c.safetensors --epochs 3", "--epochs does nothing with --eval-only");
    ACCEPTED("--eval-only c.safetensors --label-smoothing 0.1 --limit-val 10 --batch 4");
    ACCEPTED("--predict x.png --checkpoint c.safetensors y.png z.png");
    REFUSED("x.png", "image files need --predict");
    /* "--" ends the options: a file named like one comes after it */
    REFUSED("--predict x.png --checkpoint c.safetensors -y.png", "unknown option '-y.png'");
    ACCEPTED("--predict x.png --checkpoint c.safetensors -- -y.png --z.png");
    ACCEPTED("--predict x.png --checkpoint c.safetensors --");
    REFUSED("--predict x.png --checkpoint c.safetensors y.png -- -z.png",
            "'--': options must come before the image files");
    REFUSED("-- x.png", "image files need --predict");
}

/* After "--" every word is an image file, in order, whatever it looks like. */
TEST(train_opts_double_dash_ends_the_options)
{
    char *argv[] = {"train_imagenet_subset", "--predict", "a.png", "--checkpoint", "c.st",
                    "--", "-b.png", "--epochs", NULL};
    static train_opts o;
    char err[512] = "";
    CHECK(tr_opts_parse(&o, 8, argv, err, sizeof err));
    CHECK(o.n_files == 2 && !strcmp(o.files[0], "-b.png") && !strcmp(o.files[1], "--epochs"));
    CHECK(!strcmp(o.predict, "a.png") && !tr_opts_given(&o, "epochs"));
}

/* The augmentation options reach the training transform as torchvision's arguments; left at
 * their defaults they keep the dataset's (a folder's flip 0.5, no affine, no jitter). */
TEST(train_opts_augment_sets_the_training_transform)
{
    static train_opts o;
    char *argv[] = {"train_imagenet_subset", "--hflip", "0.25", "--translate", "0.1",
                    "--rotate", "15", "--zoom", "0.2", "--color-jitter", "0.4",
                    "--random-erase", "0.5", NULL};
    char err[512] = "";
    REQUIRE(tr_opts_parse(&o, 13, argv, err, sizeof err));
    REQUIRE(tr_opts_validate(&o, err, sizeof err));
    cnn_transform t = {.hflip_p = 0.5f};
    tr_opts_augment(&o, &t);
    CHECK(t.hflip_p == 0.25f && t.affine_translate == 0.1f && t.affine_degrees == 15.0f);
    CHECK(t.affine_scale[0] == 1 - 0.2f && t.affine_scale[1] == 1 + 0.2f);
    CHECK(t.brightness == 0.4f && t.contrast == 0.4f && t.saturation == 0.4f);
    CHECK(t.erase_p == 0.5f);
    char *plain[] = {"train_imagenet_subset", NULL};
    REQUIRE(tr_opts_parse(&o, 1, plain, err, sizeof err));
    cnn_transform d = {.hflip_p = 0.5f};
    tr_opts_augment(&o, &d);
    CHECK(d.hflip_p == 0.5f && d.affine_translate == 0 && d.affine_degrees == 0);
    CHECK(d.affine_scale[0] == 0 && d.affine_scale[1] == 0 && d.erase_p == 0);
    CHECK(d.brightness == 0 && d.contrast == 0 && d.saturation == 0);
}

/* A checkpoint from before an option existed has no "opt.<name>": its run had the default, so
 * a resume given another value says so, as for any other changed option; given the default, or
 * not given, nothing is said and the default stays. */
TEST(train_opts_resume_notes_options_newer_than_the_checkpoint)
{
    static train_opts o;
    cnn_dict *d = NULL;
    char err[512] = "", notes[512] = "";
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_set_meta(d, "opt.model", "lenet5"));
    char *argv[] = {"train_imagenet_subset", "--rotate", "10", "--zoom", "0", NULL};
    REQUIRE(tr_opts_parse(&o, 5, argv, err, sizeof err));
    CHECK(tr_opts_from_meta(&o, d, true, err, sizeof err, notes, sizeof notes));
    CHECK(!strcmp(notes, "--rotate 10 (the run's: 0)"));
    CHECK(o.rotate == 10 && o.zoom == 0 && o.color_jitter == 0 && !strcmp(o.model, "lenet5"));
    char *plain[] = {"train_imagenet_subset", NULL};
    REQUIRE(tr_opts_parse(&o, 1, plain, err, sizeof err));
    CHECK(tr_opts_from_meta(&o, d, true, err, sizeof err, notes, sizeof notes));
    CHECK(notes[0] == 0 && o.rotate == 0);
    cnn_dict_destroy(&d);
}

/* The folder of a checkpoint path (where a resumed run writes): "/" for a file at the root,
 * "." for a bare name. */
TEST(train_opts_dir_of)
{
    char out[64];
    tr_dir_of("/last.safetensors", out, sizeof out);
    CHECK(!strcmp(out, "/"));
    tr_dir_of("last.safetensors", out, sizeof out);
    CHECK(!strcmp(out, "."));
    tr_dir_of("runs/a/last.safetensors", out, sizeof out);
    CHECK(!strcmp(out, "runs/a"));
}

/* With no option, the run is the one README.md reports (LeNet-5 on Fashion-MNIST, 12 epochs
 * of Adam at 0.002 on a cosine schedule, batches of 128): a changed default would silently
 * change every plain run and the numbers quoted for it. */
TEST(train_opts_defaults_are_the_documented_run)
{
    static train_opts o;
    char *argv[] = {"train_imagenet_subset", NULL}, err[512] = "";
    REQUIRE(tr_opts_parse(&o, 1, argv, err, sizeof err));
    CHECK(!strcmp(o.data, "fashion-mnist") && !strcmp(o.model, "lenet5"));
    CHECK(o.epochs == 12 && o.batch == 128 && o.lr == 0.002f);
    CHECK(!strcmp(o.optimizer, "adam") && o.momentum == 0.9f && o.weight_decay == 0);
    CHECK(!strcmp(o.schedule, "cosine") && o.warmup_epochs == 0 && o.label_smoothing == 0);
    CHECK(o.img_size == 0 && o.hflip == -1 && o.translate == 0 && o.random_erase == 0);
    CHECK(o.rotate == 0 && o.zoom == 0 && o.color_jitter == 0);
    CHECK(o.workers == 1 && !strcmp(o.device, "auto") && !strcmp(o.backend, "cudnn"));
    CHECK(!o.tf32 && !o.cuda_graph && !o.strict && o.seed == 0);
    CHECK(o.limit_train == 0 && o.limit_val == 0 && o.early_stop == 0 && o.stop_after == 0);
    CHECK(!o.resume[0] && !o.eval_only[0] && !o.predict[0] && !o.checkpoint_dir[0]);
    CHECK(tr_opts_validate(&o, err, sizeof err));
}
