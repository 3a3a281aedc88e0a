/* test_io.c — the file formats: .npy, safetensors, IDX (MNIST) and CSV.
 *
 * Each format is checked three ways: round trips through our own writer (every dtype,
 * non-contiguous input, 0-dim and empty tensors); files written by other code (NumPy's np.save,
 * and tests/engine/safetensors_reader.py, a safetensors reader and writer written from the
 * specification with json + numpy) read by us and ours read by them; and damaged files, each of
 * which must fail with a message naming the path and the problem, without a crash or a leak
 * (run under valgrind). Python lines are skipped with a reason when python3 or numpy is missing;
 * the MNIST lines when ../shared/data/mnist is.
 *
 * Files go to a fresh mkdtemp directory, removed at the end. */
#include "lumen.h"
#include "tap.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[64];
static char mnist_dir[PATH_MAX]; /* holding train-labels-idx1-ubyte.gz, or "" */
static char python[PATH_MAX]; /* interpreter with numpy, or "" */
static char reader[PATH_MAX]; /* safetensors_reader.py, or "" */

/* ---- helpers ----------------------------------------------------------------------------- */

/* A path in the temporary directory; up to 8 results are valid at once. */
static const char *tmp(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", tmpdir, name);
    return b;
}

static bool write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool okay = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && okay;
}

static bool write_text(const char *path, const char *text)
{
    return write_file(path, text, strlen(text));
}

/* The whole file (malloc'd, NUL-terminated), or NULL. */
static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1))) {
        *n = fread(buf, 1, (size_t)st.st_size, f);
        buf[*n] = '\0';
    }
    fclose(f);
    return buf;
}

/* Runs a shell command; its stdout and stderr go to out (cut to cap). Returns the exit status,
 * or -1 when it could not run. */
static int run(const char *cmd, char *out, size_t cap)
{
    char full[4 * PATH_MAX];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        size_t take = got < cap - 1 - n ? got : cap - 1 - n; /* read on to the end regardless */
        memcpy(out + n, chunk, take);
        n += take;
    }
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The directory of this source file, found from __FILE__ as the compiler saw it: absolute, or
 * relative to the build directory (the current one under `meson test`, else the parent of the
 * directory holding this executable). */
static bool find_source_file(const char *name, char *out)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX && access(out, R_OK) == 0)
        return true;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || dir[0] == '/') return false;
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(exe, '/');
        if (s) *s = '\0';
    }
    return snprintf(out, PATH_MAX, "%s/%s/%s", exe, dir, name) < PATH_MAX &&
           access(out, R_OK) == 0;
}

/* LUMEN_PYTHON names the interpreter (empty: none, to see the skips); else Debian's
 * /usr/bin/python3, which has numpy (a python3 earlier on PATH, as pyenv's, may not). */
static void setup_python(void)
{
    const char *env = getenv("LUMEN_PYTHON");
    const char *candidates[] = {env ? env : "/usr/bin/python3", env ? NULL : "python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (candidates[i] && !*candidates[i]) break;
        if (!candidates[i]) continue;
        char cmd[PATH_MAX + 64], out[256];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy'", candidates[i]);
        if (run(cmd, out, sizeof out) == 0) {
            snprintf(python, sizeof python, "%s", candidates[i]);
            break;
        }
    }
    if (!find_source_file("safetensors_reader.py", reader)) reader[0] = '\0';
}

/* LUMEN_MNIST_DIR (empty: none), else ../shared/data/mnist next to the repository, else the
 * workbench's /work/shared/data/mnist. */
static void setup_mnist(void)
{
    const char *env = getenv("LUMEN_MNIST_DIR");
    const char *label = "train-labels-idx1-ubyte.gz";
    char path[PATH_MAX];
    if (env) {
        snprintf(mnist_dir, sizeof mnist_dir, "%s", env);
    } else if (find_source_file("../../../shared/data/mnist/train-labels-idx1-ubyte.gz", path)) {
        snprintf(mnist_dir, sizeof mnist_dir, "%.*s", (int)(strlen(path) - strlen(label) - 1),
                 path);
    } else {
        snprintf(mnist_dir, sizeof mnist_dir, "/work/shared/data/mnist");
    }
    if (snprintf(path, sizeof path, "%s/%s", mnist_dir, label) >= (int)sizeof path ||
        access(path, R_OK) != 0)
        mnist_dir[0] = '\0';
}

/* Runs a Python script (written to the temp dir) with the temp dir and the reader's directory
 * as arguments. */
static int run_python(const char *script, char *out, size_t cap)
{
    const char *path = tmp("script.py");
    if (!write_text(path, script)) return -1;
    char readerdir[PATH_MAX];
    snprintf(readerdir, sizeof readerdir, "%s", reader);
    char *slash = strrchr(readerdir, '/');
    if (slash) *slash = '\0';
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", python, path, tmpdir, readerdir);
    return run(cmd, out, cap);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        remove(tmp(e->d_name));
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Same dtype, shape and bytes (NaNs compare by their bits). */
static bool same_tensor(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    lm_tensor *ca = lm_contiguous(a), *cb = lm_contiguous(b);
    bool same = ca && cb && memcmp(lm_data(ca), lm_data(cb), lm_nbytes(ca)) == 0;
    lm_release(ca);
    lm_release(cb);
    return same;
}

static const char *shape_of(const lm_tensor *t)
{
    static char buf[128];
    if (!t) return "(null)";
    return lm_shape_str(t->ndim, t->shape, buf, sizeof buf);
}

/* A tensor of dtype dt with distinct values: floats with fractions and signs, i64 beyond 2^32,
 * u8 across the byte range. */
static lm_tensor *make(lm_dtype dt, int ndim, const int64_t *shape)
{
    lm_tensor *t = lm_empty(ndim, shape, dt);
    int64_t n = lm_numel(t);
    for (int64_t i = 0; t && i < n; i++) {
        void *p = (char *)lm_data(t) + i * (int64_t)lm_dtype_size(dt);
        switch (dt) {
        case LM_F32: *(float *)p = (float)(i - 3) * 0.375f; break;
        case LM_F64: *(double *)p = (double)(i - 5) / 3.0; break;
        case LM_I64: *(int64_t *)p = (i - 2) * ((int64_t)1 << 35) + i; break;
        default: *(uint8_t *)p = (uint8_t)(i * 37 + 11); break;
        }
    }
    return t;
}

/* The call failed with this status and its message contains needle. */
static void check_error(bool failed, lm_status want, const char *needle, const char *what)
{
    const char *msg = lm_last_error();
    bool pass = failed && lm_last_status() == want && strstr(msg, needle) != NULL;
    ok(pass, "%s: fails (%s) naming \"%s\"", what, lm_status_name(want), needle);
    if (!pass)
        diag("failed=%d status=%s message: %s", failed, lm_status_name(lm_last_status()), msg);
}

static double at(const lm_tensor *t, int64_t flat)
{
    lm_tensor *c = lm_contiguous(t);
    double v = NAN;
    if (c) {
        lm_tensor *f = lm_view(c, LM_SHAPE(-1));
        if (f) lm_get(f, (int64_t[]){flat}, &v);
        lm_release(f);
    }
    lm_release(c);
    return v;
}

/* Every injected allocation failure while loading path gives NULL and LM_ERR_MEMORY, until k
 * is past the loader's last allocation and it succeeds; valgrind sees that nothing leaks. */
static void alloc_failures(const char *what, lm_tensor *(*load)(const char *), const char *path)
{
    bool good = true;
    int k;
    for (k = 1; k < 64; k++) {
        lm_debug_fail_alloc_after(k);
        lm_tensor *t = load(path);
        lm_debug_fail_alloc_after(0);
        if (t) {
            lm_release(t);
            break;
        }
        if (lm_last_status() != LM_ERR_MEMORY) {
            good = false;
            diag("%s, failure %d: %s", what, k, lm_last_error());
        }
    }
    ok(good && k > 1 && k < 64, "%s: each of %d allocation failures is reported", what, k - 1);
}

/* ---- .npy -------------------------------------------------------------------------------- */

static void test_npy_round_trips(void)
{
    const lm_dtype dts[] = {LM_F32, LM_F64, LM_I64, LM_U8};
    for (int i = 0; i < 4; i++) {
        lm_tensor *t = make(dts[i], LM_SHAPE(2, 3));
        const char *path = tmp("rt.npy");
        ok(lm_save_npy(t, path) == LM_OK, "npy: save %s [2,3]", lm_dtype_name(dts[i]));
        lm_tensor *u = lm_load_npy(path);
        ok(same_tensor(t, u), "npy: %s [2,3] round trip (got %s)", lm_dtype_name(dts[i]),
           shape_of(u));
        lm_release(t);
        lm_release(u);
    }

    /* Views that are not contiguous are saved in C order. */
    lm_tensor *base = make(LM_F32, LM_SHAPE(3, 4));
    lm_tensor *tr = lm_transpose(base, 0, 1);
    lm_tensor *b64 = make(LM_F64, LM_SHAPE(2, 6));
    lm_tensor *sl = lm_slice(b64, 1, 1, 6, 2);
    lm_tensor *row = make(LM_I64, LM_SHAPE(1, 3));
    lm_tensor *ex = lm_expand(row, LM_SHAPE(4, 3));
    lm_tensor *views[] = {tr, sl, ex};
    const char *names[] = {"transpose", "step-2 slice", "expand (stride 0)"};
    for (int i = 0; i < 3; i++) {
        ok(lm_save_npy(views[i], tmp("view.npy")) == LM_OK, "npy: save a %s view", names[i]);
        lm_tensor *u = lm_load_npy(tmp("view.npy"));
        ok(same_tensor(views[i], u) && lm_is_contiguous(u), "npy: %s view reads back in C order",
           names[i]);
        lm_release(u);
    }
    lm_release(tr);
    lm_release(base);
    lm_release(sl);
    lm_release(b64);
    lm_release(ex);
    lm_release(row);

    lm_tensor *s = lm_scalar(-2.5, LM_F64);
    lm_save_npy(s, tmp("scalar.npy"));
    lm_tensor *su = lm_load_npy(tmp("scalar.npy"));
    ok(su && su->ndim == 0 && same_tensor(s, su), "npy: 0-dim round trip (%s)", shape_of(su));
    lm_release(s);
    lm_release(su);

    lm_tensor *e = lm_zeros(LM_SHAPE(3, 0, 2), LM_I64);
    lm_save_npy(e, tmp("empty.npy"));
    lm_tensor *eu = lm_load_npy(tmp("empty.npy"));
    is_str(shape_of(eu), "[3,0,2]", "npy: empty tensor round trip keeps its shape");
    lm_release(e);
    lm_release(eu);

    /* The layout NumPy expects: version 1.0, data at a multiple of 64, header ends with \n. */
    lm_tensor *t = make(LM_F32, LM_SHAPE(2, 3));
    lm_save_npy(t, tmp("layout.npy"));
    size_t n = 0;
    unsigned char *b = read_file(tmp("layout.npy"), &n);
    size_t hlen = b && n > 10 ? (size_t)(b[8] | b[9] << 8) : 0;
    ok(b && memcmp(b, "\x93NUMPY\x01\x00", 8) == 0 && (10 + hlen) % 64 == 0 &&
           b[10 + hlen - 1] == '\n' && n == 10 + hlen + 24 &&
           strstr((char *)b + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
       "npy: version 1.0 header padded to 64 bytes (%zu-byte header)", hlen);
    free(b);
    lm_release(t);
}

static void test_npy_errors(void)
{
    check_error(lm_load_npy("/nonexistent/dir/missing.npy") == NULL, LM_ERR_IO,
                "/nonexistent/dir/missing.npy", "npy: missing file");
    lm_tensor *t = make(LM_F32, LM_SHAPE(4));
    check_error(lm_save_npy(t, "/nonexistent/dir/out.npy") != LM_OK, LM_ERR_IO,
                "/nonexistent/dir/out.npy", "npy: save into a missing directory");

    write_text(tmp("bad_magic.npy"), "PK\x03\x04 not numpy at all");
    check_error(lm_load_npy(tmp("bad_magic.npy")) == NULL, LM_ERR_ARG, "not a .npy file",
                "npy: wrong magic");

    /* A valid file cut short: the header promises more data than the file holds. */
    lm_save_npy(t, tmp("trunc.npy"));
    size_t n = 0;
    unsigned char *b = read_file(tmp("trunc.npy"), &n);
    write_file(tmp("trunc.npy"), b, n - 5);
    check_error(lm_load_npy(tmp("trunc.npy")) == NULL, LM_ERR_ARG,
                "promises 16 data bytes (shape [4], '<f4') but the file holds 11",
                "npy: truncated data");
    /* The same header with its dict damaged. */
    char *key = memmem(b, n, "'shape'", 7);
    if (key) memcpy(key, "'shope'", 7);
    write_file(tmp("badkey.npy"), b, n);
    check_error(lm_load_npy(tmp("badkey.npy")) == NULL, LM_ERR_ARG, "unexpected or repeated key",
                "npy: unknown header key");
    write_file(tmp("hdrcut.npy"), b, 30);
    check_error(lm_load_npy(tmp("hdrcut.npy")) == NULL, LM_ERR_ARG, "truncated header",
                "npy: header cut short");
    free(b);
    lm_release(t);
}

static void test_npy_numpy(void)
{
    const int lines = 21;
    if (!python[0]) {
        for (int i = 0; i < lines; i++) skip("python3 with numpy not found", "npy: NumPy interop");
        return;
    }
    char out[8192];
    const char *script =
        "import sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "np.save(d + '/np_f4.npy', np.arange(24, dtype='<f4').reshape(2, 3, 4) * 0.5 - 3)\n"
        "np.save(d + '/np_fortran.npy', np.asfortranarray(np.arange(12.0).reshape(3, 4)))\n"
        "np.save(d + '/np_fortran3.npy',\n"
        "        np.asfortranarray(np.arange(24, dtype='<i8').reshape(2, 3, 4)))\n"
        "np.save(d + '/np_i4.npy', np.array([[-5, 7, 2**31 - 1], [-2**31, 0, 1]], '<i4'))\n"
        "np.save(d + '/np_i2.npy', np.array([-32768, 32767, -1], '<i2'))\n"
        "np.save(d + '/np_i1.npy', np.array([-128, 127, 0], 'i1'))\n"
        "np.save(d + '/np_b1.npy', np.array([True, False, True]))\n"
        "np.save(d + '/np_u1.npy', np.arange(256, dtype='u1').reshape(16, 16))\n"
        "np.save(d + '/np_i8.npy', np.array([2**62 + 1, -2**63], '<i8'))\n"
        "np.save(d + '/np_0d.npy', np.float64(2.75))\n"
        "np.save(d + '/np_empty.npy', np.zeros((0, 3), 'f4'))\n"
        "with open(d + '/np_v2.npy', 'wb') as f:\n"
        "    np.lib.format.write_array(f, np.arange(5, dtype='<f4'), version=(2, 0))\n"
        "np.save(d + '/np_be.npy', np.arange(3, dtype='>f4'))\n"
        "np.save(d + '/np_u4.npy', np.arange(3, dtype='<u4'))\n"
        "print('written')\n";
    int rc = run_python(script, out, sizeof out);
    ok(rc == 0 && strstr(out, "written"), "npy: NumPy wrote the reference files (rc %d)", rc);
    if (rc != 0) diag("%s", out);

    lm_tensor *t = lm_load_npy(tmp("np_f4.npy"));
    ok(t && t->dtype == LM_F32 && strcmp(shape_of(t), "[2,3,4]") == 0 && at(t, 0) == -3.0 &&
           at(t, 23) == 8.5,
       "npy: NumPy <f4 [2,3,4] (%s)", shape_of(t));
    lm_release(t);
    t = lm_load_npy(tmp("np_fortran.npy"));
    bool all = t && t->dtype == LM_F64 && strcmp(shape_of(t), "[3,4]") == 0 &&
               lm_is_contiguous(t);
    for (int i = 0; all && i < 12; i++) all = at(t, i) == i;
    ok(all, "npy: Fortran-order [3,4] f8 comes back in C order (%s)", shape_of(t));
    lm_release(t);
    t = lm_load_npy(tmp("np_fortran3.npy"));
    all = t && t->dtype == LM_I64 && strcmp(shape_of(t), "[2,3,4]") == 0;
    for (int i = 0; all && i < 24; i++) all = at(t, i) == i;
    ok(all, "npy: Fortran-order [2,3,4] i8 comes back in C order");
    lm_release(t);
    t = lm_load_npy(tmp("np_i4.npy"));
    ok(t && t->dtype == LM_I64 && at(t, 0) == -5 && at(t, 2) == 2147483647.0 &&
           at(t, 3) == -2147483648.0,
       "npy: <i4 widens to i64 with signs kept");
    lm_release(t);
    t = lm_load_npy(tmp("np_i2.npy"));
    ok(t && t->dtype == LM_I64 && at(t, 0) == -32768 && at(t, 1) == 32767 && at(t, 2) == -1,
       "npy: <i2 widens to i64");
    lm_release(t);
    t = lm_load_npy(tmp("np_i1.npy"));
    ok(t && t->dtype == LM_I64 && at(t, 0) == -128 && at(t, 1) == 127, "npy: |i1 widens to i64");
    lm_release(t);
    t = lm_load_npy(tmp("np_b1.npy"));
    ok(t && t->dtype == LM_U8 && at(t, 0) == 1 && at(t, 1) == 0 && at(t, 2) == 1,
       "npy: |b1 reads as u8 0/1");
    lm_release(t);
    t = lm_load_npy(tmp("np_u1.npy"));
    ok(t && t->dtype == LM_U8 && strcmp(shape_of(t), "[16,16]") == 0 && at(t, 255) == 255,
       "npy: |u1 [16,16]");
    lm_release(t);
    t = lm_load_npy(tmp("np_i8.npy"));
    ok(t && t->dtype == LM_I64 && ((int64_t *)lm_data(t))[0] == ((int64_t)1 << 62) + 1 &&
           ((int64_t *)lm_data(t))[1] == INT64_MIN,
       "npy: <i8 keeps all 64 bits");
    lm_release(t);
    t = lm_load_npy(tmp("np_0d.npy"));
    ok(t && t->ndim == 0 && at(t, 0) == 2.75, "npy: NumPy 0-dim scalar (%s)", shape_of(t));
    lm_release(t);
    t = lm_load_npy(tmp("np_empty.npy"));
    is_str(shape_of(t), "[0,3]", "npy: NumPy empty array");
    lm_release(t);
    t = lm_load_npy(tmp("np_v2.npy"));
    ok(t && strcmp(shape_of(t), "[5]") == 0 && at(t, 4) == 4, "npy: format version 2.0");
    lm_release(t);
    alloc_failures("npy: Fortran-order load", lm_load_npy, tmp("np_fortran3.npy"));
    check_error(lm_load_npy(tmp("np_be.npy")) == NULL, LM_ERR_UNSUPPORTED,
                "big-endian dtype '>f4'", "npy: big-endian data");
    check_error(lm_load_npy(tmp("np_u4.npy")) == NULL, LM_ERR_UNSUPPORTED,
                "dtype '<u4' is not supported", "npy: unsupported dtype");

    /* Ours, read by NumPy. */
    lm_tensor *a = lm_from_data((float[]){0.5f, -1.25f, 3.0f, 4.5f, 0.0f, -0.0f}, LM_F32,
                                LM_SHAPE(2, 3));
    lm_tensor *b = lm_from_data((double[]){1, 2, 3, 4, 5, 6}, LM_F64, LM_SHAPE(2, 3));
    lm_tensor *bt = lm_transpose(b, 0, 1);
    lm_tensor *c = lm_scalar(-7, LM_I64);
    lm_tensor *d = lm_zeros(LM_SHAPE(0, 4), LM_U8);
    lm_tensor *e = lm_from_data((uint8_t[]){0, 255, 17}, LM_U8, LM_SHAPE(3));
    lm_save_npy(a, tmp("ours_a.npy"));
    lm_save_npy(bt, tmp("ours_b.npy"));
    lm_save_npy(c, tmp("ours_c.npy"));
    lm_save_npy(d, tmp("ours_d.npy"));
    lm_save_npy(e, tmp("ours_e.npy"));
    const char *check =
        "import sys, json, numpy as np\n"
        "for n in 'abcde':\n"
        "    a = np.load(sys.argv[1] + '/ours_%s.npy' % n)\n"
        "    print(n, json.dumps([a.dtype.str, list(a.shape), a.ravel().tolist()]))\n";
    rc = run_python(check, out, sizeof out);
    ok(rc == 0, "npy: NumPy loads our files (rc %d)", rc);
    has_str(out, "a [\"<f4\", [2, 3], [0.5, -1.25, 3.0, 4.5, 0.0, -0.0]]", "npy: NumPy reads f32");
    has_str(out, "b [\"<f8\", [3, 2], [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]]",
            "npy: NumPy reads a transposed f64 in C order");
    has_str(out, "c [\"<i8\", [], [-7]]", "npy: NumPy reads a 0-dim i64");
    has_str(out, "d [\"|u1\", [0, 4], []]\ne [\"|u1\", [3], [0, 255, 17]]",
            "npy: NumPy reads empty and plain u8");
    lm_release(a);
    lm_release(bt);
    lm_release(b);
    lm_release(c);
    lm_release(d);
    lm_release(e);
}

/* ---- safetensors -------------------------------------------------------------------------- */

#define ST_N 8

static const char *st_names[ST_N] = {"w", "layer.0/b \"q\"", "idx", "mask", "wt", "scalar",
                                     "empty", "na\xc3\xafve"};
static const char *st_keys[2] = {"format", "note"};
static const char *st_values[2] = {"pt", "quote \" backslash \\ newline \n tab \t ctrl \x01 "
                                         "\xc3\xa9"};

/* The round-trip set: every dtype, a transposed view, 0-dim, empty, and awkward names. */
static void st_tensors(lm_tensor **t)
{
    t[0] = lm_from_data((float[]){0.5f, 1, 1.5f, 2, 2.5f, 3}, LM_F32, LM_SHAPE(2, 3));
    t[1] = lm_from_data((double[]){-1.0 / 3.0, 1e300, -0.0}, LM_F64, LM_SHAPE(3));
    t[2] = lm_from_data((int64_t[]){-3, (int64_t)1 << 40, 7, -((int64_t)1 << 50)}, LM_I64,
                        LM_SHAPE(2, 2));
    t[3] = lm_from_data((uint8_t[]){0, 1, 255, 3, 4}, LM_U8, LM_SHAPE(5));
    t[4] = lm_transpose(t[0], 0, 1);
    t[5] = lm_scalar(4.25, LM_F32);
    t[6] = lm_zeros(LM_SHAPE(0, 4), LM_F32);
    t[7] = lm_from_data((uint8_t[]){42}, LM_U8, LM_SHAPE(1));
}

static void test_st_round_trip(void)
{
    lm_tensor *t[ST_N];
    st_tensors(t);
    const char *path = tmp("model.safetensors");
    lm_status s = lm_safetensors_save(path, ST_N, st_names, t, 2, st_keys, st_values);
    ok(s == LM_OK, "safetensors: save %d tensors and 2 metadata entries", ST_N);
    if (s != LM_OK) diag("%s", lm_last_error());
    ok(access(tmp("model.safetensors.tmp"), F_OK) != 0, "safetensors: no .tmp file is left");

    lm_tensor_file *f = lm_safetensors_load(path);
    ok(f && f->n == ST_N && f->n_meta == 2, "safetensors: load gives %d tensors, 2 metadata",
       f ? f->n : -1);
    bool names_ok = f && f->n == ST_N, data_ok = names_ok;
    for (int i = 0; names_ok && i < ST_N; i++) names_ok = strcmp(f->names[i], st_names[i]) == 0;
    for (int i = 0; data_ok && i < ST_N; i++) data_ok = same_tensor(t[i], f->tensors[i]);
    ok(names_ok, "safetensors: names (with quotes, slash, UTF-8) come back in order");
    ok(data_ok, "safetensors: every tensor comes back with its dtype, shape and bytes");
    ok(f && f->n_meta == 2 && strcmp(f->meta_keys[0], "format") == 0 &&
           strcmp(f->meta_values[0], "pt") == 0 && strcmp(f->meta_keys[1], "note") == 0 &&
           strcmp(f->meta_values[1], st_values[1]) == 0,
       "safetensors: metadata with escapes comes back exactly");
    lm_tensor_file_free(f);

    /* The layout: the header is padded so the data starts at a multiple of 8. */
    size_t n = 0;
    unsigned char *b = read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; b && n >= 8 && i >= 0; i--) hlen = hlen << 8 | b[i];
    uint64_t data = 6 * 4 + 3 * 8 + 4 * 8 + 5 + 6 * 4 + 4 + 0 + 1;
    ok(b && (8 + hlen) % 8 == 0 && 8 + hlen + data == n && b[8] == '{',
       "safetensors: 8-aligned header of %llu bytes, then %llu data bytes",
       (unsigned long long)hlen, (unsigned long long)data);
    free(b);

    /* A second save replaces the file; a failed save leaves it alone. */
    ok(lm_safetensors_save(path, 1, st_names, t, 0, NULL, NULL) == LM_OK,
       "safetensors: save over an existing file");
    const char *bad_names[2] = {"a", "\xff\xfe"};
    check_error(lm_safetensors_save(path, 2, bad_names, t, 0, NULL, NULL) != LM_OK, LM_ERR_ARG,
                "not valid UTF-8", "safetensors: save with an invalid UTF-8 name");
    f = lm_safetensors_load(path);
    ok(f && f->n == 1 && same_tensor(f->tensors[0], t[0]),
       "safetensors: a failed save leaves the previous file intact");
    lm_tensor_file_free(f);

    for (int i = ST_N - 1; i >= 0; i--) lm_release(t[i]);
}

/* Finds `"name": {...}` in the reader's JSON dump; copies the object's text into buf. */
static bool dump_entry(const char *dump, const char *json_name, char *buf, size_t cap)
{
    char key[256];
    snprintf(key, sizeof key, "%s: {", json_name);
    const char *p = strstr(dump, key);
    if (!p) return false;
    const char *end = strchr(p, '}');
    if (!end) return false;
    size_t n = (size_t)(end - p + 1) < cap - 1 ? (size_t)(end - p + 1) : cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

static void test_st_python(void)
{
    const int lines = 16;
    if (!python[0] || !reader[0]) {
        for (int i = 0; i < lines; i++)
            skip(!python[0] ? "python3 with numpy not found" : "safetensors_reader.py not found",
                 "safetensors: independent Python reader");
        return;
    }
    /* Ours, read by the independent reader. */
    lm_tensor *t[ST_N];
    st_tensors(t);
    const char *path = tmp("ours.safetensors");
    lm_safetensors_save(path, ST_N, st_names, t, 2, st_keys, st_values);
    for (int i = ST_N - 1; i >= 0; i--) lm_release(t[i]);
    char cmd[4 * PATH_MAX], out[16384], entry[1024];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python, reader, path);
    int rc = run(cmd, out, sizeof out);
    ok(rc == 0, "safetensors: the Python reader accepts our file (rc %d)", rc);
    if (rc != 0) diag("%s", out);
    has_str(out, "\"order\": [\"w\", \"layer.0/b \\\"q\\\"\", \"idx\", \"mask\", \"wt\", "
                 "\"scalar\", \"empty\", \"na\\u00efve\"]",
            "safetensors: Python sees our names in order");
    has_str(out, "\"metadata\": {\"format\": \"pt\", \"note\": \"quote \\\" backslash \\\\ "
                 "newline \\n tab \\t ctrl \\u0001 \\u00e9\"}",
            "safetensors: Python reads our escaped metadata");
    ok(dump_entry(out, "\"w\"", entry, sizeof entry) &&
           strstr(entry, "\"data_offsets\": [0, 24], \"dtype\": \"F32\", \"first\": [0.5, 1.0, "
                         "1.5, 2.0, 2.5, 3.0]") &&
           strstr(entry, "\"shape\": [2, 3], \"sum\": 10.5"),
       "safetensors: Python reads f32 'w'");
    ok(dump_entry(out, "\"layer.0/b \\\"q\\\"\"", entry, sizeof entry) &&
           strstr(entry, "\"dtype\": \"F64\", \"first\": [-0.3333333333333333, 1e+300, -0.0]"),
       "safetensors: Python reads f64 with full precision");
    ok(dump_entry(out, "\"idx\"", entry, sizeof entry) &&
           strstr(entry, "\"first\": [-3, 1099511627776, 7, -1125899906842624]") &&
           strstr(entry, "\"sum\": -1124800395214844"),
       "safetensors: Python reads i64 exactly");
    ok(dump_entry(out, "\"mask\"", entry, sizeof entry) &&
           strstr(entry, "\"dtype\": \"U8\", \"first\": [0, 1, 255, 3, 4]"),
       "safetensors: Python reads u8");
    ok(dump_entry(out, "\"wt\"", entry, sizeof entry) &&
           strstr(entry, "\"first\": [0.5, 2.0, 1.0, 2.5, 1.5, 3.0]") &&
           strstr(entry, "\"shape\": [3, 2]"),
       "safetensors: a transposed tensor is stored in C order");
    ok(dump_entry(out, "\"scalar\"", entry, sizeof entry) &&
           strstr(entry, "\"numel\": 1, \"shape\": [], \"sum\": 4.25"),
       "safetensors: Python reads a 0-dim tensor");
    ok(dump_entry(out, "\"empty\"", entry, sizeof entry) &&
           strstr(entry, "\"numel\": 0, \"shape\": [0, 4]"),
       "safetensors: Python reads an empty tensor");

    /* Written by the Python module, read by us: padded and unpadded headers, \u escapes
     * (json.dumps escapes non-ASCII, the emoji as a surrogate pair). */
    const char *script =
        "import sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "import safetensors_reader as st\n"
        "d = sys.argv[1]\n"
        "ts = {'a': np.arange(12, dtype='f4').reshape(3, 4) * 0.25,\n"
        "      'b.c': np.array([[1.5, -2.0]], 'f8'),\n"
        "      'i': np.array([-2**40, 5], 'i8'),\n"
        "      'u': np.arange(200, 206, dtype='u1'),\n"
        "      'z': np.zeros((2, 0), 'f4'),\n"
        "      's': np.array(7, 'i8'),\n"
        "      '\\u00fc': np.array([1], 'u1')}\n"
        "meta = {'k': 'v', 'unicode': '\\u00fc \\u20ac \\U0001F600 \"q\" \\\\'}\n"
        "st.write(d + '/py.safetensors', ts, meta)\n"
        "st.write(d + '/py_nopad.safetensors', ts, None, align=1)\n"
        "st.write(d + '/py_f16.safetensors', {'h': np.array([1.0], 'f2')})\n"
        "print('written')\n";
    rc = run_python(script, out, sizeof out);
    ok(rc == 0 && strstr(out, "written"), "safetensors: the Python module wrote files (rc %d)",
       rc);
    if (rc != 0) diag("%s", out);
    const char *files[2] = {"py.safetensors", "py_nopad.safetensors"};
    for (int k = 0; k < 2; k++) {
        lm_tensor_file *f = lm_safetensors_load(tmp(files[k]));
        bool good = f && f->n == 7 && strcmp(f->names[0], "a") == 0 &&
                    strcmp(f->names[6], "\xc3\xbc") == 0 && f->tensors[0]->dtype == LM_F32 &&
                    strcmp(shape_of(f->tensors[0]), "[3,4]") == 0 &&
                    at(f->tensors[0], 11) == 2.75 && f->tensors[1]->dtype == LM_F64 &&
                    at(f->tensors[1], 1) == -2.0 && f->tensors[2]->dtype == LM_I64 &&
                    ((int64_t *)lm_data(f->tensors[2]))[0] == -((int64_t)1 << 40) &&
                    f->tensors[3]->dtype == LM_U8 && at(f->tensors[3], 5) == 205 &&
                    strcmp(shape_of(f->tensors[4]), "[2,0]") == 0 &&
                    f->tensors[5]->ndim == 0 && at(f->tensors[5], 0) == 7;
        ok(good, "safetensors: we read the Python-written %s", files[k]);
        if (!f) diag("%s", lm_last_error());
        if (k == 0)
            ok(f && f->n_meta == 2 && strcmp(f->meta_keys[1], "unicode") == 0 &&
                   strcmp(f->meta_values[1],
                          "\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80 \"q\" \\") == 0,
               "safetensors: \\u escapes (a surrogate pair too) decode to UTF-8");
        lm_tensor_file_free(f);
    }
    check_error(lm_safetensors_load(tmp("py_f16.safetensors")) == NULL, LM_ERR_UNSUPPORTED,
                "tensor 'h': unsupported dtype 'F16'", "safetensors: F16 from Python");

    /* The reader is strict too: it refuses what we refuse. */
    const char *hole = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    unsigned char buf[256] = {0};
    size_t hl = strlen(hole);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hole, hl);
    write_file(tmp("hole.safetensors"), buf, 8 + hl + 12);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python, reader, tmp("hole.safetensors"));
    rc = run(cmd, out, sizeof out);
    ok(rc == 1 && strstr(out, "hole"), "safetensors: the Python reader refuses a hole (rc %d)",
       rc);
}

/* A safetensors file from a header text and n zero data bytes; hlen_override (when not 0)
 * replaces the length field. */
static const char *st_file(const char *name, const char *header, size_t ndata,
                           uint64_t hlen_override)
{
    size_t hl = strlen(header);
    size_t total = 8 + hl + ndata;
    unsigned char *b = calloc(1, total);
    uint64_t field = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(field >> (8 * i));
    memcpy(b + 8, header, hl);
    const char *path = tmp(name);
    write_file(path, b, total);
    free(b);
    return path;
}

static void st_bad(const char *header, size_t ndata, const char *needle, const char *what)
{
    const char *path = st_file("bad.safetensors", header, ndata, 0);
    lm_tensor_file *f = lm_safetensors_load(path);
    char label[160];
    snprintf(label, sizeof label, "safetensors: %s", what);
    check_error(f == NULL && strstr(lm_last_error(), path) != NULL, LM_ERR_ARG, needle, label);
    lm_tensor_file_free(f);
}

#define T1(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_st_errors(void)
{
    check_error(lm_safetensors_load("/nonexistent/dir/missing.safetensors") == NULL, LM_ERR_IO,
                "/nonexistent/dir/missing.safetensors", "safetensors: missing file");

    write_text(tmp("short.safetensors"), "abc");
    check_error(lm_safetensors_load(tmp("short.safetensors")) == NULL, LM_ERR_ARG,
                "too short for the 8-byte header length", "safetensors: 3-byte file");
    const char *p = st_file("beyond.safetensors", "{}", 0, 1000);
    check_error(lm_safetensors_load(p) == NULL, LM_ERR_ARG,
                "header length 1000 is beyond the end of the file (10 bytes)",
                "safetensors: header length beyond the file");

    /* A sparse 120 MB file whose header length passes the size check but not the limit. */
    p = st_file("huge.safetensors", "{}", 0, (uint64_t)110 << 20);
    ok(truncate(p, (off_t)120 << 20) == 0, "safetensors: made a sparse 120 MB file");
    check_error(lm_safetensors_load(p) == NULL, LM_ERR_ARG, "beyond the 104857600-byte limit",
                "safetensors: header length over the limit");
    remove(p);

    /* A valid file cut short. */
    lm_tensor *t = make(LM_F32, LM_SHAPE(2, 3));
    const char *name = "weight";
    p = tmp("trunc.safetensors");
    lm_safetensors_save(p, 1, &name, &t, 0, NULL, NULL);
    size_t n = 0;
    unsigned char *b = read_file(p, &n);
    write_file(p, b, n - 3);
    free(b);
    check_error(lm_safetensors_load(p) == NULL, LM_ERR_ARG,
                "tensor 'weight' ends at byte 24 of the data but the file holds only 21 data "
                "bytes (truncated?)", "safetensors: truncated file");

    /* Byte positions are 0-based offsets into the header. */
    const char *comma = "{" T1("a", "F32", "[1]", 0, 4) ",}";
    char want[96];
    snprintf(want, sizeof want, "bad JSON header at byte %zu (file offset %zu): expected a "
             "string key", strlen(comma) - 1, strlen(comma) + 7);
    st_bad(comma, 4, want, "trailing comma");
    st_bad("{\"a\" {}}", 0, "at byte 5 (file offset 13): expected ':' after an object key",
           "missing colon");
    st_bad("{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 4, 12) "}", 12,
           "tensor 'b' data_offsets [4,12] overlap tensor 'a' [0,8]", "overlapping offsets");
    st_bad("{" T1("a", "F32", "[1]", 0, 4) "," T1("b", "F32", "[1]", 8, 12) "}", 12,
           "hole in the data between tensor 'a' (ends at 4) and tensor 'b' (begins at 8)",
           "a hole between tensors");
    st_bad("{" T1("a", "F32", "[1]", 4, 8) "}", 8, "hole in the data before tensor 'a'",
           "data not starting at 0");
    st_bad("{" T1("a", "F32", "[1]", 0, 4) "}", 9, "5 data bytes after the last tensor",
           "bytes after the last tensor");
    p = st_file("bf16.safetensors", "{" T1("a", "BF16", "[2]", 0, 4) "}", 4, 0);
    check_error(lm_safetensors_load(p) == NULL, LM_ERR_UNSUPPORTED,
                "tensor 'a': unsupported dtype 'BF16' (supported: F32 F64 I64 U8)",
                "safetensors: BF16 tensor");
    st_bad("{" T1("a", "F32", "[2]", 0, 4) "}", 4,
           "data_offsets [0,4] span 4 bytes but shape [2] F32 needs 8", "offsets vs shape");
    st_bad("{" T1("a", "F32", "[1]", 4, 0) "}", 4, "end before they begin", "reversed offsets");
    st_bad("{" T1("a", "F32", "[1]", 0, 4) "," T1("a", "F32", "[1]", 4, 8) "}", 8,
           "duplicate key", "duplicate tensor name");
    st_bad("{\"__metadata__\":{\"k\":5}}", 0, "metadata value of 'k' is not a string",
           "non-string metadata");
    st_bad("{" T1("a", "F32", "[2.0]", 0, 8) "}", 8, "numbers in the header must be integers",
           "float in a shape");
    st_bad("{" T1("a", "F32", "[-1]", 0, 0) "}", 0, "shape entry 0 is not a non-negative",
           "negative size");
    st_bad("{" T1("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "9 dims (at most 8)",
           "too many dims");
    st_bad("{" T1("\\ud800x", "F32", "[1]", 0, 4) "}", 4, "unpaired surrogate",
           "unpaired surrogate escape");
    st_bad("{" T1("\xc3(", "F32", "[1]", 0, 4) "}", 4, "string is not valid UTF-8",
           "invalid UTF-8 in a name");
    st_bad("{} x", 0, "unexpected text after the header object", "text after the object");
    st_bad("[]", 0, "the header must be a JSON object", "array header");
    st_bad("{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}", 0, "nested too deeply",
           "deep nesting");
    st_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "\"data_offsets\" must be [BEGIN, END]",
           "missing data_offsets");
    st_bad("{\"a\":\"x\\q\"}", 0, "bad escape in a string", "bad escape");

    /* Saving refuses what would make a bad file. */
    lm_tensor *two[2] = {t, t};
    const char *dup[2] = {"x", "x"};
    check_error(lm_safetensors_save(tmp("dup.safetensors"), 2, dup, two, 0, NULL, NULL) != LM_OK,
                LM_ERR_ARG, "tensor name 'x' appears twice", "safetensors: duplicate names");
    const char *reserved = "__metadata__";
    check_error(lm_safetensors_save(tmp("res.safetensors"), 1, &reserved, &t, 0, NULL, NULL) !=
                    LM_OK,
                LM_ERR_ARG, "is reserved", "safetensors: the reserved name");
    check_error(lm_safetensors_save("/nonexistent/dir/out.safetensors", 1, &name, &t, 0, NULL,
                                    NULL) != LM_OK,
                LM_ERR_IO, "/nonexistent/dir/out.safetensors", "safetensors: save into a missing "
                "directory");
    ok(access(tmp("dup.safetensors"), F_OK) != 0, "safetensors: a refused save writes nothing");
    lm_release(t);
}

/* Every injected allocation failure gives LM_ERR_MEMORY (or, past the last allocation,
 * success), with nothing leaked (valgrind) and the old file intact on save. */
static void test_st_alloc_failures(void)
{
    lm_tensor *t[ST_N];
    st_tensors(t);
    char path[PATH_MAX]; /* tmp()'s buffers rotate: keep a copy across the loops */
    snprintf(path, sizeof path, "%s", tmp("oom.safetensors"));
    lm_safetensors_save(path, ST_N, st_names, t, 2, st_keys, st_values);
    bool load_ok = true, save_ok = true;
    int k;
    for (k = 1; k < 64; k++) {
        lm_debug_fail_alloc_after(k);
        lm_tensor_file *f = lm_safetensors_load(path);
        lm_debug_fail_alloc_after(0);
        if (f) {
            lm_tensor_file_free(f);
            break;
        }
        if (lm_last_status() != LM_ERR_MEMORY) {
            load_ok = false;
            diag("load, failure %d: %s", k, lm_last_error());
        }
    }
    ok(load_ok && k > 1, "safetensors: load survives each of %d allocation failures", k - 1);
    for (k = 1; k < 64; k++) {
        lm_debug_fail_alloc_after(k);
        lm_status s = lm_safetensors_save(path, ST_N, st_names, t, 2, st_keys, st_values);
        lm_debug_fail_alloc_after(0);
        if (s == LM_OK) break;
        if (s != LM_ERR_MEMORY || access(tmp("oom.safetensors.tmp"), F_OK) == 0) {
            save_ok = false;
            diag("save, failure %d: %s", k, lm_last_error());
        }
        lm_tensor_file *f = lm_safetensors_load(path);
        if (!f || f->n != ST_N) {
            save_ok = false;
            diag("save, failure %d: the old file does not load: %s", k, lm_last_error());
        }
        lm_tensor_file_free(f);
    }
    ok(save_ok && k > 1, "safetensors: save survives each of %d allocation failures, old file "
       "intact", k - 1);
    for (int i = ST_N - 1; i >= 0; i--) lm_release(t[i]);
}

/* ---- IDX ---------------------------------------------------------------------------------- */

static void test_idx_mnist(void)
{
    const int lines = 7;
    char path[PATH_MAX];
    if (!mnist_dir[0]) {
        for (int i = 0; i < lines; i++)
            skip("MNIST not found (../shared/data/mnist; set LUMEN_MNIST_DIR)", "idx: MNIST");
        return;
    }
    static const int64_t train_hist[10] = {5923, 6742, 5958, 6131, 5842,
                                           5421, 5918, 6265, 5851, 5949};
    static const int64_t test_hist[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
    const char *sets[2] = {"train", "t10k"};
    const int64_t counts[2] = {60000, 10000};
    const int64_t *hists[2] = {train_hist, test_hist};
    /* Pixel sums from Python's gzip + numpy reading the same files. */
    const int64_t first_sum[2] = {27525, 18454}, total_sum[2] = {1567298545, 264923200};
    for (int s = 0; s < 2; s++) {
        lm_tensor *l = NULL;
        if (snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", mnist_dir, sets[s]) <
            (int)sizeof path)
            l = lm_load_idx(path);
        char want[32];
        snprintf(want, sizeof want, "[%lld]", (long long)counts[s]);
        ok(l && l->dtype == LM_U8 && strcmp(shape_of(l), want) == 0, "idx: %s labels %s u8",
           sets[s], shape_of(l));
        int64_t hist[10] = {0};
        bool in_range = l != NULL;
        for (int64_t i = 0; l && i < counts[s]; i++) {
            uint8_t v = ((uint8_t *)lm_data(l))[i];
            if (v < 10) hist[v]++;
            else in_range = false;
        }
        ok(in_range && memcmp(hist, hists[s], sizeof hist) == 0,
           "idx: %s label histogram matches (0: %lld, 9: %lld)", sets[s], (long long)hist[0],
           (long long)hist[9]);
        if (s == 0) {
            const uint8_t *d = l ? lm_data(l) : (const uint8_t *)"\xff\xff\xff\xff\xff";
            ok(d[0] == 5 && d[1] == 0 && d[2] == 4 && d[3] == 1 && d[4] == 9,
               "idx: train labels start 5 0 4 1 9");
        }
        lm_release(l);

        lm_tensor *im = NULL;
        if (snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", mnist_dir, sets[s]) <
            (int)sizeof path)
            im = lm_load_idx(path);
        snprintf(want, sizeof want, "[%lld,28,28]", (long long)counts[s]);
        int64_t first = 0, total = 0;
        for (int64_t i = 0; im && i < counts[s] * 784; i++) {
            uint8_t v = ((uint8_t *)lm_data(im))[i];
            total += v;
            if (i < 784) first += v;
        }
        ok(im && im->dtype == LM_U8 && strcmp(shape_of(im), want) == 0 &&
               first == first_sum[s] && total == total_sum[s],
           "idx: %s images %s, pixel sums %lld / %lld", sets[s], shape_of(im), (long long)first,
           (long long)total);
        lm_release(im);
    }
}

/* An IDX file: magic, big-endian sizes, then the given data bytes. */
static size_t idx_bytes(unsigned char *buf, int type, int ndim, const uint32_t *dims,
                        const void *data, size_t ndata)
{
    buf[0] = buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++) buf[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    memcpy(buf + 4 + 4 * ndim, data, ndata);
    return 4 + 4 * (size_t)ndim + ndata;
}

static bool write_gz(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    if (!gz) return false;
    bool okay = gzwrite(gz, data, (unsigned)n) == (int)n;
    return gzclose(gz) == Z_OK && okay;
}

static void test_idx_files(void)
{
    unsigned char buf[4096];
    /* i32 [2,3], big-endian: -1, 2, 65536, INT32_MIN, INT32_MAX, 0 */
    const unsigned char i32[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 1, 0, 0,
                                 0x80, 0,    0,    0,    0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    size_t n = idx_bytes(buf, 0x0C, 2, (uint32_t[]){2, 3}, i32, sizeof i32);
    write_file(tmp("i32.idx"), buf, n);
    lm_tensor *t = lm_load_idx(tmp("i32.idx"));
    int64_t want_i32[6] = {-1, 2, 65536, INT32_MIN, INT32_MAX, 0};
    ok(t && t->dtype == LM_I64 && strcmp(shape_of(t), "[2,3]") == 0 &&
           memcmp(lm_data(t), want_i32, sizeof want_i32) == 0,
       "idx: plain i32 [2,3] widens to i64 (%s)", shape_of(t));
    ok(write_gz(tmp("i32.idx.gz"), buf, n), "idx: gzipped a copy");
    lm_tensor *g = lm_load_idx(tmp("i32.idx.gz"));
    ok(same_tensor(t, g), "idx: gzipped and plain files read the same");
    lm_release(t);
    lm_release(g);
    alloc_failures("idx: gzipped i32 load", lm_load_idx, tmp("i32.idx.gz"));

    const unsigned char i16[] = {0xff, 0xfe, 0x01, 0x2c};
    n = idx_bytes(buf, 0x0B, 1, (uint32_t[]){2}, i16, sizeof i16);
    write_file(tmp("i16.idx"), buf, n);
    t = lm_load_idx(tmp("i16.idx"));
    ok(t && t->dtype == LM_I64 && at(t, 0) == -2 && at(t, 1) == 300, "idx: i16");
    lm_release(t);

    const unsigned char i8[] = {0x80, 0x7f, 0xff};
    n = idx_bytes(buf, 0x09, 1, (uint32_t[]){3}, i8, sizeof i8);
    write_file(tmp("i8.idx"), buf, n);
    t = lm_load_idx(tmp("i8.idx"));
    ok(t && t->dtype == LM_I64 && at(t, 0) == -128 && at(t, 1) == 127 && at(t, 2) == -1,
       "idx: i8");
    lm_release(t);

    /* f32 1.5, -2.25, +inf; f64 -0.125 */
    const unsigned char f32[] = {0x3f, 0xc0, 0, 0, 0xc0, 0x10, 0, 0, 0x7f, 0x80, 0, 0};
    n = idx_bytes(buf, 0x0D, 1, (uint32_t[]){3}, f32, sizeof f32);
    write_file(tmp("f32.idx"), buf, n);
    t = lm_load_idx(tmp("f32.idx"));
    ok(t && t->dtype == LM_F32 && at(t, 0) == 1.5 && at(t, 1) == -2.25 && isinf(at(t, 2)),
       "idx: f32 (big-endian bytes swapped)");
    lm_release(t);
    const unsigned char f64[] = {0xbf, 0xc0, 0, 0, 0, 0, 0, 0};
    n = idx_bytes(buf, 0x0E, 1, (uint32_t[]){1}, f64, sizeof f64);
    write_file(tmp("f64.idx"), buf, n);
    t = lm_load_idx(tmp("f64.idx"));
    ok(t && t->dtype == LM_F64 && at(t, 0) == -0.125, "idx: f64");
    lm_release(t);

    unsigned char u8[1000];
    for (int i = 0; i < 1000; i++) u8[i] = (unsigned char)(i * 7);
    n = idx_bytes(buf, 0x08, 3, (uint32_t[]){10, 10, 10}, u8, sizeof u8);
    write_file(tmp("u8.idx"), buf, n);
    t = lm_load_idx(tmp("u8.idx"));
    ok(t && t->dtype == LM_U8 && strcmp(shape_of(t), "[10,10,10]") == 0 &&
           memcmp(lm_data(t), u8, 1000) == 0,
       "idx: u8 [10,10,10]");
    lm_release(t);

    /* Damaged files. */
    check_error(lm_load_idx("/nonexistent/dir/missing-idx1-ubyte.gz") == NULL, LM_ERR_IO,
                "/nonexistent/dir/missing-idx1-ubyte.gz", "idx: missing file");
    write_file(tmp("trunc.idx"), buf, n - 300);
    check_error(lm_load_idx(tmp("trunc.idx")) == NULL, LM_ERR_ARG,
                "promises 1000 data bytes (shape [10,10,10] u8) but the file holds 700",
                "idx: truncated plain file");
    memcpy(buf + n, "xy", 2);
    write_file(tmp("long.idx"), buf, n + 2);
    check_error(lm_load_idx(tmp("long.idx")) == NULL, LM_ERR_ARG, "but the file holds 1002",
                "idx: bytes after the data");
    write_gz(tmp("long.idx.gz"), buf, n + 2);
    check_error(lm_load_idx(tmp("long.idx.gz")) == NULL, LM_ERR_ARG,
                "the file holds 1002 after decompression", "idx: gzip with bytes after the data");
    write_gz(tmp("short.idx.gz"), buf, n - 1);
    check_error(lm_load_idx(tmp("short.idx.gz")) == NULL, LM_ERR_ARG,
                "the file holds 999 after decompression", "idx: gzip with a short payload");
    /* A damaged header promising 2^48 bytes in a tiny gzip file fails before allocating. */
    n = idx_bytes(buf, 0x08, 3, (uint32_t[]){65536, 65536, 65536}, u8, 10);
    write_gz(tmp("huge.idx.gz"), buf, n);
    check_error(lm_load_idx(tmp("huge.idx.gz")) == NULL, LM_ERR_ARG,
                "promises 281474976710656 data bytes (shape [65536,65536,65536] u8), more than a",
                "idx: gzip header promising more than the file can hold");
    /* A gzip stream cut in the middle. */
    size_t gn = 0;
    unsigned char *gz = read_file(tmp("long.idx.gz"), &gn);
    write_file(tmp("cut.idx.gz"), gz, gn / 2);
    free(gz);
    lm_tensor *cut = lm_load_idx(tmp("cut.idx.gz"));
    ok(cut == NULL && strstr(lm_last_error(), tmp("cut.idx.gz")) != NULL,
       "idx: a gzip stream cut in half fails naming the path (%s)", lm_last_error());
    lm_release(cut);

    write_file(tmp("magic.idx"), "\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9);
    check_error(lm_load_idx(tmp("magic.idx")) == NULL, LM_ERR_ARG, "not an IDX file",
                "idx: bad magic");
    write_file(tmp("type.idx"), "\x00\x00\x0a\x01\x00\x00\x00\x01\x05", 9);
    check_error(lm_load_idx(tmp("type.idx")) == NULL, LM_ERR_ARG, "unknown element type 0x0a",
                "idx: unknown element type");
    write_file(tmp("dims.idx"), "\x00\x00\x08\x09", 4);
    check_error(lm_load_idx(tmp("dims.idx")) == NULL, LM_ERR_ARG, "9 dims", "idx: too many dims");
    write_file(tmp("sizes.idx"), "\x00\x00\x08\x03\x00\x00\x00\x01", 8);
    check_error(lm_load_idx(tmp("sizes.idx")) == NULL, LM_ERR_ARG, "truncated in the sizes",
                "idx: sizes cut short");
    write_file(tmp("empty.idx"), "", 0);
    check_error(lm_load_idx(tmp("empty.idx")) == NULL, LM_ERR_ARG, "too short for the 4-byte magic",
                "idx: empty file");
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static lm_tensor *csv(const char *text, bool header, char delim, lm_dtype dt, char ***names,
                      int *ncols)
{
    write_text(tmp("t.csv"), text);
    return lm_load_csv(tmp("t.csv"), header, delim, dt, names, ncols);
}

static lm_tensor *load_csv_f32(const char *path)
{
    return lm_load_csv(path, false, ',', LM_F32, NULL, NULL);
}

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

static void test_csv(void)
{
    char **names = NULL;
    int ncols = -1;
    lm_tensor *t = csv("\xef\xbb\xbf\"a\", b ,\"c,\"\"d\"\"\"\r\n"
                       "1, 2.5 ,-3e2\r\n"
                       " 4,nan, -inf\r\n"
                       "-0.5,1E-3,\"7\"\r\n"
                       "\r\n\n  \n",
                       true, ',', LM_F64, &names, &ncols);
    ok(t && strcmp(shape_of(t), "[3,3]") == 0 && ncols == 3, "csv: header + 3 rows, \\r\\n, "
       "trailing blank lines (%s, %d cols)", shape_of(t), ncols);
    if (!t) diag("%s", lm_last_error());
    ok(names && strcmp(names[0], "a") == 0 && strcmp(names[1], "b") == 0 &&
           strcmp(names[2], "c,\"d\"") == 0,
       "csv: quoted header names with a delimiter and \"\" inside");
    ok(t && at(t, 0) == 1 && at(t, 1) == 2.5 && at(t, 2) == -300 && at(t, 3) == 4 &&
           isnan(at(t, 4)) && at(t, 5) == -INFINITY && at(t, 6) == -0.5 && at(t, 7) == 1e-3 &&
           at(t, 8) == 7,
       "csv: ints, decimals, exponents, nan, -inf, spaces and a quoted number");
    free_names(names, ncols);
    lm_release(t);

    t = csv("1;2\n3;4", false, ';', LM_F32, &names, &ncols);
    ok(t && strcmp(shape_of(t), "[2,2]") == 0 && ncols == 2 && names == NULL && at(t, 3) == 4,
       "csv: no header, ';', no final newline");
    lm_release(t);
    t = csv("1\t2\n3\t 4\n", false, '\t', LM_U8, NULL, NULL);
    ok(t && t->dtype == LM_U8 && at(t, 3) == 4, "csv: tab delimiter into u8");
    lm_release(t);

    t = csv("9007199254740993,3.0,1e3\n-5,0,+7\n", false, ',', LM_I64, NULL, NULL);
    ok(t && ((int64_t *)lm_data(t))[0] == 9007199254740993LL && at(t, 1) == 3 &&
           at(t, 2) == 1000 && at(t, 3) == -5 && at(t, 5) == 7,
       "csv: i64 exact beyond 2^53; 3.0 and 1e3 are integers");
    lm_release(t);
    t = csv("1,,3\n", false, ',', LM_F32, NULL, NULL);
    ok(t && isnan(at(t, 1)), "csv: an empty cell is NaN for f32");
    lm_release(t);
    alloc_failures("csv: load", load_csv_f32, tmp("t.csv"));
    t = csv("a,b\n", true, ',', LM_F32, &names, &ncols);
    ok(t && strcmp(shape_of(t), "[0,2]") == 0 && ncols == 2, "csv: header only gives [0,2]");
    free_names(names, ncols);
    lm_release(t);
    t = csv("", false, ',', LM_F32, NULL, &ncols);
    ok(t && strcmp(shape_of(t), "[0,0]") == 0 && ncols == 0, "csv: empty file gives [0,0]");
    lm_release(t);
    t = csv("a,b\n1,2\n", true, ',', LM_F32, NULL, &ncols);
    ok(t && ncols == 2, "csv: header without column_names wanted");
    lm_release(t);

    /* Errors name PATH:LINE:COLUMN. */
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:3:3: cell \"abc\" (column 2) is not a number", tmp("t.csv"));
    check_error(csv("x,y,z\n1,2,3\n4,abc,6\n", true, ',', LM_F32, &names, &ncols) == NULL,
                LM_ERR_ARG, want, "csv: bad cell");
    ok(names == NULL && ncols == 0, "csv: no outputs after a failure");
    snprintf(want, sizeof want, "%s:2:4: row has 2 cells, expected 3 (as line 1)", tmp("t.csv"));
    check_error(csv("1,2,3\n4,5\n", false, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG, want,
                "csv: short row");
    snprintf(want, sizeof want, "%s:3:5: row has 3 cells, expected 2 (the header's count)",
             tmp("t.csv"));
    check_error(csv("a,b\n1,2\n3,4,5\n", true, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                want, "csv: long row");
    check_error(csv("1\n\n2\n", false, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                "t.csv:2: blank line between rows", "csv: blank line between rows");
    check_error(csv("1,3.5\n", false, ',', LM_I64, NULL, NULL) == NULL, LM_ERR_ARG,
                ":1:3: cell \"3.5\" (column 2) is not an integer", "csv: fraction into i64");
    check_error(csv("0,256\n", false, ',', LM_U8, NULL, NULL) == NULL, LM_ERR_ARG,
                "cell \"256\" (column 2) is out of range for u8", "csv: 256 into u8");
    check_error(csv("99999999999999999999\n", false, ',', LM_I64, NULL, NULL) == NULL,
                LM_ERR_ARG, "is out of range for i64", "csv: 1e20 into i64");
    check_error(csv("1,,3\n", false, ',', LM_I64, NULL, NULL) == NULL, LM_ERR_ARG,
                ":1:3: cell \"\" (column 2) is empty", "csv: empty cell into i64");
    check_error(csv("\"1,2\n", false, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                ":1:1: unterminated quoted cell", "csv: unterminated quote");
    check_error(csv("\"1\"x,2\n", false, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                ":1:4: text after a closing quote", "csv: text after a quote");
    check_error(csv("", true, ',', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                ":1: the header line is missing", "csv: empty file with a header wanted");
    check_error(csv("1,2\n", false, '.', LM_F32, NULL, NULL) == NULL, LM_ERR_ARG,
                "delimiter 0x2e cannot separate numbers", "csv: '.' as a delimiter");
    check_error(lm_load_csv("/nonexistent/dir/missing.csv", true, ',', LM_F32, NULL, NULL) ==
                    NULL,
                LM_ERR_IO, "/nonexistent/dir/missing.csv", "csv: missing file");
}

int main(void)
{
    plan_auto();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lumen-test-io-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        ok(false, "mkdtemp %s", tmpdir);
        return done();
    }
    setup_python();
    setup_mnist();
    if (!python[0]) diag("no python3 with numpy: NumPy and reader lines are skipped");

    test_npy_round_trips();
    test_npy_errors();
    test_npy_numpy();
    test_st_round_trip();
    test_st_python();
    test_st_errors();
    test_st_alloc_failures();
    test_idx_mnist();
    test_idx_files();
    test_csv();

    remove_tmpdir();
    lm_release_cached_memory(); /* so valgrind's "still reachable" shows only what is ours */
    return done();
}
