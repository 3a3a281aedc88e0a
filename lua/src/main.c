/* main.c — the `lumen` program: Lua 5.4 with the Lumen binding registered and its libraries on
 * the path.
 *
 *   lumen script.lua args...   run a script; `arg` as lua.c builds it (arg[0] = script)
 *   lumen -e 'code'            run code (several -e run in order), then a script if given
 *   lumen -                    run standard input
 *   lumen                      a plain read-eval-print loop (the REPL issue makes it rich)
 *   lumen --version | --help
 *
 * `lm` is preloaded as a global (require "lumen" works too). Errors print the message and a
 * traceback to stderr and exit with status 1. Ctrl-C while Lua runs raises an error in the
 * running code, as lua.c does (a signal handler that arms a count hook); the OpenMP workers are
 * started with SIGINT blocked so the signal always reaches the thread running Lua.
 *
 * The Lua libraries (lua/lumen/) are found, in order: in $LUMEN_LUA_DIR; next to the
 * executable once installed (<prefix>/bin/lumen -> <prefix>/share/lua/5.4); in the source tree
 * the build was configured from (running from the build directory). */
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_lumen_core(lua_State *L);

#ifndef LUMEN_VERSION
#define LUMEN_VERSION "unknown"
#endif
#ifndef LUMEN_SOURCE_LUA_DIR
#define LUMEN_SOURCE_LUA_DIR ""
#endif
#ifndef LUMEN_INSTALL_LUA_REL
#define LUMEN_INSTALL_LUA_REL "../share/lua/5.4"
#endif

static const char *progname = "lumen";
static lua_State *volatile g_L;

/* ---- Ctrl-C: as lua.c, stop the running code with an error ---------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    signal(sig, SIG_DFL); /* a second Ctrl-C before the hook runs kills the process */
    lua_sethook(g_L, stop_hook, flag, 1);
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs the function on top of the stack with nargs arguments below it, with a traceback on
 * error and Ctrl-C armed. Leaves nres results (or LUA_MULTRET). */
static int docall(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    g_L = L;
    signal(SIGINT, on_sigint);
    int status = lua_pcall(L, nargs, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error without message)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* ---- finding the Lua libraries --------------------------------------------------------------- */

static bool has_init(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/lumen/init.lua", dir) >= (int)sizeof path) return false;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool find_lua_dir(char *out, size_t cap)
{
    const char *env = getenv("LUMEN_LUA_DIR");
    if (env && *env && has_init(env)) {
        snprintf(out, cap, "%s", env);
        return true;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char cand[PATH_MAX];
            char real[PATH_MAX];
            if (snprintf(cand, sizeof cand, "%s/%s", exe, LUMEN_INSTALL_LUA_REL) < (int)sizeof cand &&
                realpath(cand, real) && has_init(real)) {
                snprintf(out, cap, "%s", real);
                return true;
            }
        }
    }
    if (*LUMEN_SOURCE_LUA_DIR && has_init(LUMEN_SOURCE_LUA_DIR)) {
        snprintf(out, cap, "%s", LUMEN_SOURCE_LUA_DIR);
        return true;
    }
    return false;
}

/* Puts dir/?.lua and dir/?/init.lua in front of package.path. */
static void prepend_path(lua_State *L, const char *dir)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static int setup(lua_State *L)
{
    /* Lua's default incremental collector is kept: the generational one made an MLP step 5%
     * faster but a LeNet step 25% slower (bench/nn_step.lua), each large tensor's accounted
     * bytes triggering a young collection. */
    luaL_openlibs(L);
    luaL_requiref(L, "lumen.core", luaopen_lumen_core, 0);
    lua_pop(L, 1);
    char dir[PATH_MAX];
    if (!find_lua_dir(dir, sizeof dir))
        return luaL_error(L, "cannot find the Lumen Lua libraries (lumen/init.lua): looked in "
                             "$LUMEN_LUA_DIR, <exe>/%s and %s", LUMEN_INSTALL_LUA_REL,
                          LUMEN_SOURCE_LUA_DIR);
    prepend_path(L, dir);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lumen");
    lua_call(L, 1, 1);
    lua_setglobal(L, "lm");
    return 0;
}

/* ---- arguments ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] [script [args...]]\n"
            "  -e code     run code (may be repeated)\n"
            "  -           run standard input\n"
            "  -v, --version  print the version\n"
            "  -h, --help     this text\n"
            "With no script and no -e, reads Lua lines interactively.\n",
            progname);
}

/* The global `arg`: script at 0, its arguments at 1.., the interpreter and options below 0. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script)
{
    int narg = argc - (script + 1);
    lua_createtable(L, narg, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int run_script(lua_State *L, const char *fname, char **argv, int argc, int script)
{
    if (strcmp(fname, "-") == 0) fname = NULL; /* stdin */
    int status = luaL_loadfile(L, fname);
    if (status != LUA_OK) return report(L, status);
    int n = argc - (script + 1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return report(L, docall(L, n, 0));
}

static int run_string(lua_State *L, const char *code, const char *name)
{
    int status = luaL_loadbuffer(L, code, strlen(code), name);
    if (status == LUA_OK) status = docall(L, 0, 0);
    return report(L, status);
}

/* ---- a plain interactive loop ----------------------------------------------------------------- */

static void print_results(lua_State *L, int n)
{
    if (n == 0) return;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, -(n + 1));
    if (lua_pcall(L, n, 0, 0) != LUA_OK) report(L, LUA_ERRRUN);
}

static void repl(lua_State *L)
{
    char line[8192];
    printf("Lumen %s (Lua 5.4); `lm` is loaded. Ctrl-D exits.\n", LUMEN_VERSION);
    for (;;) {
        fputs("> ", stdout);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        int base = lua_gettop(L);
        /* An expression prints its value, as in lua.c; otherwise run it as a statement. */
        const char *ret = lua_pushfstring(L, "return %s", line);
        int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
        lua_remove(L, -2);
        if (status != LUA_OK) {
            lua_pop(L, 1);
            status = luaL_loadbuffer(L, line, strlen(line), "=stdin");
        }
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) print_results(L, lua_gettop(L) - base);
        else report(L, status);
        lua_settop(L, base);
    }
    putchar('\n');
}

typedef struct {
    int argc;
    char **argv;
    int status;
} main_args;

static int pmain(lua_State *L)
{
    main_args *a = lua_touserdata(L, 1);
    int argc = a->argc;
    char **argv = a->argv;
    int script = 0;
    bool ran_code = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("lumen %s (%s)\n", LUMEN_VERSION, LUA_RELEASE);
            return 0;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
    }
    lua_settop(L, 0);
    if (setup(L) != 0) return 0;
    /* Options before the script: -e code; the first other argument is the script. */
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-e") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: '-e' needs an argument\n", progname);
                usage(stderr);
                a->status = 1;
                return 0;
            }
            i++;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: unknown option '%s'\n", progname, argv[i]);
            usage(stderr);
            a->status = 1;
            return 0;
        } else {
            break;
        }
    }
    script = i < argc ? i : 0;
    create_arg_table(L, argv, argc, script ? script : argc - 1);
    for (int j = 1; j < (script ? script : argc); j++) {
        if (strcmp(argv[j], "-e") == 0) {
            ran_code = true;
            if (run_string(L, argv[++j], "=(command line)") != LUA_OK) {
                a->status = 1;
                return 0;
            }
        }
    }
    if (script) {
        if (run_script(L, argv[script], argv, argc, script) != LUA_OK) a->status = 1;
    } else if (!ran_code) {
        if (isatty(0)) repl(L);
        else if (run_script(L, "-", argv, argc, argc - 1) != LUA_OK) a->status = 1;
    }
    return 0;
}

/* Starts the OpenMP worker threads (which OpenBLAS shares) with SIGINT blocked, so they inherit
 * a mask without it and Ctrl-C always lands on the thread running Lua (NOTES.md). libgomp
 * creates its workers at the first parallel region and keeps them. */
static void start_workers_without_sigint(void)
{
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, &old) != 0) return;
#pragma omp parallel num_threads(omp_get_num_procs())
    {
        (void)0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int main(int argc, char **argv)
{
    if (argv[0] && argv[0][0]) progname = "lumen";
    start_workers_without_sigint();
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "%s: cannot create the Lua state: not enough memory\n", progname);
        return 1;
    }
    main_args a = {argc, argv, 0};
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &a);
    int status = docall(L, 1, 0);
    if (status != LUA_OK) {
        report(L, status);
        a.status = 1;
    }
    lua_close(L);
    return a.status;
}
