/* lumen_lua.h — what the files of the Lua binding (lua/src/) share: the tensor userdata,
 * argument readers, keyword options, result helpers and error raising. Prefix lb_ (Lumen
 * binding).
 *
 * Conventions every binding function follows
 * - A tensor is a full userdata (lb_box) with metatable "lumen.Tensor". The box is created
 *   BEFORE the engine call that fills it (lb_newbox, then lb_setbox), so a Lua memory error can
 *   never leak an engine tensor (NOTES.md: any Lua API call may longjmp).
 * - Engine failures become Lua errors carrying the engine's message (lb_fail / lb_check).
 * - Dims, indices and class labels are 0-based (the engine's rule); Lua sequences stay 1-based.
 * - Keyword options come as a trailing table with string keys: t:sum{dim = 1, keepdim = true}.
 *   lb_opts(L, idx) says whether the value at idx is such a table (a table that is not a tensor
 *   and has no [1]); positional and keyword forms may be mixed: t:sum(1, {keepdim = true}).
 *   A key the function does not take is an error listing the keys it takes (lb_options).
 * - In-place functions (NAME_) return their first argument itself, so calls chain.
 * - Arithmetic and comparisons take a Lua number on either side (math_lua.c); a fill value
 *   may be a number, a boolean or a one-element tensor (lb_check_fill_scalar).
 * - Integers are exact: Lua integers are 64-bit, and the binding moves them into and out of
 *   integer tensors without a double in between (lm.tensor, item, totable, full, fill_, index
 *   assignment, masked_fill, where, and arithmetic and comparisons of an i64 tensor with a Lua
 *   integer), so math.maxinteger round-trips. Where the engine API itself takes a double (the
 *   bounds of arange, linspace and clamp, alpha, the fill value of an expanded view, numbers
 *   next to u8 tensors) an integer beyond 2^53 is rounded to the nearest double.
 */
#ifndef LUMEN_LUA_H
#define LUMEN_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "lumen.h"

#define LB_TENSOR_MT "lumen.Tensor"

typedef struct lb_box {
    lm_tensor *t; /* owned reference; NULL once closed or collected */
} lb_box;

/* ---- the tensor userdata ---------------------------------------------------------------- */

/* Pushes a new, empty box and returns it. */
lb_box *lb_newbox(lua_State *L);
/* Stores t (a new reference from the engine) in the box on top of the stack; a NULL t raises the
 * engine's error. Fresh tensor memory paces Lua's collector (see tensor_lua.c). */
void lb_setbox(lua_State *L, lb_box *box, lm_tensor *t);
/* Pushes t (a new reference, taken over) as a tensor whose memory already exists elsewhere
 * (t.grad): not counted for the collector. NULL raises the engine's error. For fresh results
 * use lb_newbox before the engine call, then lb_setbox. */
void lb_push(lua_State *L, lm_tensor *t);

/* The tensor at idx; raises "bad argument #n (tensor expected, got X)" otherwise, and a clear
 * error for a closed tensor. */
lm_tensor *lb_check(lua_State *L, int idx);
/* The tensor at idx, or NULL when idx holds nil or nothing. */
lm_tensor *lb_opt(lua_State *L, int idx);
/* The tensor at idx or NULL, without raising. */
lm_tensor *lb_test(lua_State *L, int idx);
bool lb_is_tensor(lua_State *L, int idx);
/* True when idx holds a tensor box that was closed (lb_test returns NULL for it): for values
 * that are not arguments of their own, such as table elements, whose errors name them. */
bool lb_is_closed(lua_State *L, int idx);
/* Pushes the malloc'd string s and frees it, also when pushing raises a memory error; a NULL s
 * raises the engine's error. Returns 1. */
int lb_push_cstring(lua_State *L, char *s);


/* ---- engine errors -------------------------------------------------------------------------- */

/* Raises the engine's last error as a Lua error (with the caller's position). Never returns. */
int lb_fail(lua_State *L);
/* Raises when s != LM_OK. */
void lb_check_status(lua_State *L, lm_status s);

/* ---- arguments ----------------------------------------------------------------------------- */

/* "f32" "f64" "i64" "u8" (also "float32"/"float", "float64"/"double", "int64"/"long",
 * "uint8"/"byte"/"bool") -> dtype; raises with the list of names otherwise. */
lm_dtype lb_check_dtype(lua_State *L, int idx);
lm_dtype lb_dtype_from_name(lua_State *L, const char *name);

/* A shape given as integers from idx on (stopping at the first non-number) or as one table
 * sequence at idx: lm.zeros(3, 4) and lm.zeros({3, 4}). Returns ndim; *next receives the index
 * of the first argument after the shape. Sizes must be integers (-1 allowed when allow_neg). */
int lb_check_shape(lua_State *L, int idx, int64_t shape[LM_MAX_DIMS], int *next, bool allow_neg);
/* A Lua sequence of integers at idx (or a single integer) -> dims; returns the count. */
int lb_check_dims(lua_State *L, int idx, int dims[LM_MAX_DIMS]);
/* The length of the table at idx (its __len included) as a count in [0, max]; otherwise raises
 * naming what ("shape", "safetensors_save: names"). */
int lb_len(lua_State *L, int idx, int max, const char *what);

/* ---- keyword options (a trailing table with string keys) ------------------------------------ */

/* True when idx holds an options table: a plain table (not a tensor) without [1]. */
bool lb_opts(lua_State *L, int idx);
/* Field `key` of the options table at opts_idx (0 = no table): the default when absent or nil,
 * an error naming the key when of the wrong type. */
lua_Integer lb_opt_int(lua_State *L, int opts_idx, const char *key, lua_Integer def);
double lb_opt_num(lua_State *L, int opts_idx, const char *key, double def);
bool lb_opt_bool(lua_State *L, int opts_idx, const char *key, bool def);
const char *lb_opt_str(lua_State *L, int opts_idx, const char *key, const char *def);
lm_dtype lb_opt_dtype_field(lua_State *L, int opts_idx, const char *key, lm_dtype def);
/* Borrowed tensor in field key, or NULL when absent; a closed tensor raises. */
lm_tensor *lb_opt_tensor_field(lua_State *L, int opts_idx, const char *key);
/* True when the options table has field key (not nil). */
bool lb_opt_has(lua_State *L, int opts_idx, const char *key);
/* Index of the trailing options table among the arguments, or 0 when the last one is not one. */
int lb_trailing_opts(lua_State *L);

/* ---- arguments by position or keyword (args_lua.c) ----------------------------------------- */

/* The tensor at idx, or NULL when idx holds something else; a closed tensor raises (lb_test
 * would return NULL for it). */
lm_tensor *lb_tensor_at(lua_State *L, int idx);
/* A number proper: a numeric string is refused, as it is almost always a mistake. */
double lb_check_num(lua_State *L, int idx);
/* An integer that fits an int (dims, counts). */
int lb_check_int(lua_State *L, int idx);
/* A boolean proper: nil and other values are refused. */
bool lb_check_bool(lua_State *L, int idx);

/* A scalar from Lua, kept exact: an integer (a Lua integer, a boolean as 0 or 1, the element of
 * an integer tensor) keeps all 64 bits in i; d is the value as a double either way. */
typedef struct lb_scalar {
    double d;
    int64_t i;
    bool is_int;
} lb_scalar;
/* A number, or a boolean as 1 or 0. */
lb_scalar lb_check_scalar(lua_State *L, int idx);
/* A fill value: a number, a boolean or a one-element tensor. */
lb_scalar lb_check_fill_scalar(lua_State *L, int idx);
/* True when s survives a trip through a double (a float, or an integer within +-2^53), so an
 * engine function taking a double gets it exactly. */
bool lb_scalar_exact(lb_scalar s);
/* s as a 0-dim tensor of dtype dt (new reference, NULL on error); an integer is converted from
 * int64, never through a double. */
lm_tensor *lb_scalar_tensor(lb_scalar s, lm_dtype dt);
/* Fills t with s: lm_fill_ when s is exact as a double, else a copy of an exact 0-dim tensor. */
lm_status lb_fill_exact(lm_tensor *t, lb_scalar s);

/* Raises "bad argument #o (unknown option 'k'; takes a, b)" for a key of the options table at o
 * that is not in keys (NULL-terminated), so a misspelt option never goes unnoticed. */
void lb_check_keys(lua_State *L, int o, const char *const *keys);
/* The trailing options table's index (0 when none), its keys checked against keys; *npos
 * receives the number of positional arguments before it. */
int lb_options(lua_State *L, const char *const *keys, int *npos);
/* True when positional argument idx (of npos) was given and is not nil. */
bool lb_given(lua_State *L, int idx, int npos);
/* The value at position idx or in option key of the table at o (the option wins), else def. */
double lb_num_arg(lua_State *L, int idx, int npos, int o, const char *key, double def);
/* As lb_num_arg, for any integer. */
lua_Integer lb_integer_arg(lua_State *L, int idx, int npos, int o, const char *key,
                           lua_Integer def);
/* As lb_integer_arg, for one that must fit an int; out of range is an error naming key. */
int lb_int_arg(lua_State *L, int idx, int npos, int o, const char *key, int def);
/* As lb_num_arg, for a boolean. */
bool lb_bool_arg(lua_State *L, int idx, int npos, int o, const char *key, bool def);
/* A borrowed tensor at position idx or in option key (the option wins), or NULL. */
lm_tensor *lb_tensor_arg(lua_State *L, int idx, int npos, int o, const char *key);
/* Dims at position idx (an integer or a table of integers) or in option `dim` (the option
 * wins); returns their count, 0 when none was given (reductions then take every dim). */
int lb_dims_arg(lua_State *L, int idx, int npos, int o, int dims[LM_MAX_DIMS]);

/* ---- results (args_lua.c) ------------------------------------------------------------------- */

/* Pushes fn(tensor at 1) as a new tensor: the whole of a one-tensor op. */
int lb_unary(lua_State *L, lm_tensor *(*fn)(const lm_tensor *));
/* Pushes fn(tensor at 1, tensor at 2) as a new tensor. */
int lb_binary(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, const lm_tensor *));
/* Ends an in-place function: raises when s != LM_OK, else returns argument 1 itself, so calls
 * chain. */
int lb_self_result(lua_State *L, lm_status s);
/* lb_setbox for the box at stack index idx, which need not be on top (ops with two results). */
void lb_setbox_at(lua_State *L, int idx, lm_tensor *t);

/* ---- registration ------------------------------------------------------------------------ */

/* A function registered as lm.NAME and, when method is true, as t:NAME. */
typedef struct lb_reg {
    const char *name;
    lua_CFunction fn;
    bool method;
} lb_reg;

/* Registers regs (terminated by {NULL}) into the module table at mod_idx and the method table at
 * meth_idx (absolute indices). */
void lb_register(lua_State *L, int mod_idx, int meth_idx, const lb_reg *regs);

/* Each binding file contributes its functions; module.c calls them in turn. */
void lb_open_tensor(lua_State *L, int mod_idx, int meth_idx);  /* tensor_lua.c */
void lb_open_ops(lua_State *L, int mod_idx, int meth_idx);     /* ops_lua.c */
void lb_open_math(lua_State *L, int mod_idx, int meth_idx);    /* math_lua.c */
void lb_open_grad(lua_State *L, int mod_idx, int meth_idx);    /* grad_lua.c */
void lb_open_nn(lua_State *L, int mod_idx, int meth_idx);      /* nn_lua.c */
void lb_open_io(lua_State *L, int mod_idx, int meth_idx);      /* io_lua.c */

/* __index and __newindex for t[i], t[{...}], t[mask] (index_lua.c); called by the tensor
 * metatable after method and field lookup. */
int lb_index_get(lua_State *L);
int lb_index_set(lua_State *L);

#endif /* LUMEN_LUA_H */
