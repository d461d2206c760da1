/* A stand-in for libcuda and NVRTC, for testing the CUDA device's host side where there is no GPU.

   Device memory is host memory, copies are memcpy, and a launch runs nothing: it is counted and its grid, block
   and parameters are kept for the test to read (fake_launch_count, fake_last_launch). "Compiling" returns the
   source as the binary, so a function knows how many parameters it takes (all of ours are 8 bytes: addresses
   and int64 values). Every kernel "run", launched directly or as a node of a launched CUDA graph, is logged with
   its arguments (fake_runs, fake_run). CUDA graphs keep their nodes' arguments as the driver does: copied when a
   node is added, copied again into an instantiated graph, changed there only by cuGraphExecKernelNodeSetParams.
   What it checks is the plumbing: ctypes signatures and structure layouts, staging, chunked copies, launch
   geometry, the out-of-memory path, which arguments a graph replays. Built by fake_cuda.py as libcuda.so.1 (and
   loaded as NVRTC too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
static const size_t TOTAL = (size_t)1 << 30; /* a 1 GiB "GPU" */
static size_t used;
static int launches;
static unsigned last_grid, last_block;
static uint64_t last_first_param;

#define MAX_PARAMS 32
typedef struct { char name[128]; int nparams; } Function;
typedef struct { const Function *fn; unsigned grid, block; uint64_t params[MAX_PARAMS]; } Run;
#define LOG_SIZE 4096
static Run run_log[LOG_SIZE]; /* the last LOG_SIZE kernel runs */
static int runs;

static void log_run(const Function *fn, unsigned grid, unsigned block, const uint64_t *params) {
  Run *r = &run_log[runs++ % LOG_SIZE];
  r->fn = fn;
  r->grid = grid;
  r->block = block;
  memcpy(r->params, params, sizeof r->params);
}

/* the arguments kernelParams points at, by value (the caller's memory may be gone after the call) */
static int copy_params(const Function *fn, void **kernel_params, uint64_t *out) {
  memset(out, 0, MAX_PARAMS * sizeof *out);
  if (fn->nparams < 0 || fn->nparams > MAX_PARAMS || (fn->nparams > 0 && !kernel_params)) return 1;
  for (int i = 0; i < fn->nparams; i++) out[i] = *(uint64_t *)kernel_params[i];
  return 0;
}

CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetName(char *name, int len, int dev) { (void)dev; strncpy(name, "Fake GPU", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 16 ? 1 : 0; /* sm_90, one multiprocessor */
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) { (void)dev; *bytes = TOTAL; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = (void *)16; return 0; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; return 0; }
CUresult cuCtxSynchronize(void) { return 0; }

/* each allocation carries its size in front, so cuMemFree can give it back to the total */
CUresult cuMemAlloc_v2(uint64_t *ptr, size_t n) {
  if (used + n > TOTAL) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  size_t *p = malloc(n + 16);
  if (!p) return 2;
  p[0] = n;
  used += n;
  *ptr = (uint64_t)(uintptr_t)(p + 2);
  return 0;
}
CUresult cuMemFree_v2(uint64_t ptr) {
  size_t *p = (size_t *)(uintptr_t)ptr - 2;
  used -= p[0];
  free(p);
  return 0;
}
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) { *free_bytes = TOTAL - used; *total = TOTAL; return 0; }
CUresult cuMemHostAlloc(void **p, size_t n, unsigned flags) { (void)flags; *p = malloc(n); return *p ? 0 : 2; }
CUresult cuMemFreeHost(void *p) { free(p); return 0; }
CUresult cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *s) {
  (void)s; memcpy((void *)(uintptr_t)dst, src, n); return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *s) {
  (void)s; memcpy(dst, (void *)(uintptr_t)src, n); return 0;
}
CUresult cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *s) {
  (void)s; memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n); return 0;
}
CUresult cuMemcpyPeerAsync(uint64_t dst, void *dc, uint64_t src, void *sc, size_t n, void *s) {
  (void)dc; (void)sc; (void)s; memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n); return 0;
}
CUresult cuModuleLoadData(void **module, const void *image) { *module = (void *)image; return image ? 0 : 200; }
CUresult cuModuleUnload(void *module) { (void)module; return 0; }
/* the number of parameters of kernel `name` in the source: commas between the parentheses after its name */
static int count_params(const char *source, const char *name) {
  size_t n = strlen(name);
  for (const char *at = strstr(source, name); at; at = strstr(at + 1, name)) {
    if (at[n] != '(' || (at > source && at[-1] != ' ')) continue;
    const char *p = at + n + 1;
    if (*p == ')') return 0;
    int count = 1;
    for (; *p && *p != ')'; p++) count += *p == ',';
    return count;
  }
  return -1;
}
CUresult cuModuleGetFunction(void **fn, void *module, const char *name) {
  Function *f = calloc(1, sizeof *f);
  strncpy(f->name, name, sizeof f->name - 1);
  f->nparams = count_params((const char *)module, name);
  *fn = f;
  return f->nparams < 0 ? 500 : 0; /* CUDA_ERROR_NOT_FOUND */
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
  (void)gy; (void)gz; (void)by; (void)bz; (void)smem; (void)stream; (void)extra;
  uint64_t values[MAX_PARAMS];
  if (gx == 0 || bx == 0 || bx > 1024 || copy_params(f, params, values)) return 1; /* CUDA_ERROR_INVALID_VALUE */
  launches++;
  last_grid = gx;
  last_block = bx;
  last_first_param = values[0];
  log_run(f, gx, bx, values);
  return 0;
}

/* CUDA graphs: nodes in a chain, each after the one added before it (what the device builds; the fake replays
   nodes in the order they were added, so it refuses any other shape). CUDA_KERNEL_NODE_PARAMS, the _v2 layout. */
typedef struct {
  void *func;
  unsigned grid[3], block[3], shared_bytes;
  void **params;
  void **extra;
  void *kern, *ctx;
} NodeParams;
typedef struct { const Function *fn; unsigned grid, block; uint64_t params[MAX_PARAMS]; } Node;
#define MAX_NODES 1024
typedef struct { Node nodes[MAX_NODES]; int n; } Graph;
typedef struct { const Graph *from; Node nodes[MAX_NODES]; int n; } Exec;
static int live_graphs, live_execs, graph_launches, node_updates;
static CUresult fail_instantiate; /* a test sets it: instantiation fails with this code */
#ifndef FAKE_NO_GRAPHS /* built without them: a driver older than the graph API the device uses */

static CUresult node_from(Node *node, const NodeParams *p) {
  if (!p || !p->func || p->extra || p->kern || p->shared_bytes) return 1;
  if (p->grid[0] == 0 || p->grid[1] != 1 || p->grid[2] != 1) return 1;
  if (p->block[0] == 0 || p->block[0] > 1024 || p->block[1] != 1 || p->block[2] != 1) return 1;
  node->fn = p->func;
  node->grid = p->grid[0];
  node->block = p->block[0];
  return copy_params(node->fn, p->params, node->params);
}
CUresult cuGraphCreate(void **graph, unsigned flags) {
  if (flags) return 1;
  *graph = calloc(1, sizeof(Graph));
  live_graphs++;
  return 0;
}
CUresult cuGraphAddKernelNode_v2(void **node, void *graph, void **deps, size_t ndeps, const NodeParams *p) {
  Graph *g = graph;
  if (g->n == MAX_NODES) return 1;
  if (g->n == 0 ? ndeps != 0 : ndeps != 1 || deps[0] != &g->nodes[g->n - 1]) return 1; /* not a chain */
  CUresult r = node_from(&g->nodes[g->n], p);
  if (r) return r;
  *node = &g->nodes[g->n++];
  return 0;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
  if (flags) return 1;
  if (fail_instantiate) return fail_instantiate;
  const Graph *g = graph;
  Exec *e = malloc(sizeof *e);
  e->from = g;
  e->n = g->n;
  memcpy(e->nodes, g->nodes, sizeof e->nodes);
  *exec = e;
  live_execs++;
  return 0;
}
CUresult cuGraphExecKernelNodeSetParams_v2(void *exec, void *node, const NodeParams *p) {
  Exec *e = exec;
  long i = (Node *)node - e->from->nodes;
  if (i < 0 || i >= e->n) return 1;
  Node updated;
  CUresult r = node_from(&updated, p);
  if (r) return r;
  if (updated.fn != e->nodes[i].fn) return 1; /* the driver cannot change a node's function this way */
  e->nodes[i] = updated;
  node_updates++;
  return 0;
}
CUresult cuGraphLaunch(void *exec, void *stream) {
  (void)stream;
  const Exec *e = exec;
  graph_launches++;
  for (int i = 0; i < e->n; i++) log_run(e->nodes[i].fn, e->nodes[i].grid, e->nodes[i].block, e->nodes[i].params);
  return 0;
}
CUresult cuGraphExecDestroy(void *exec) { free(exec); live_execs--; return 0; }
CUresult cuGraphDestroy(void *graph) { free(graph); live_graphs--; return 0; }
#endif

int fake_graph_launch_count(void) { return graph_launches; }
int fake_node_updates(void) { return node_updates; }
int fake_live_graphs(void) { return live_graphs + live_execs; }
void fake_fail_instantiate(CUresult result) { fail_instantiate = result; }
int fake_runs(void) { return runs; }
/* run number i (0 for the first ever; one of the last LOG_SIZE): its kernel's name, grid, block, arguments;
   returns its number of arguments, -1 for a run no longer (or not yet) in the log */
int fake_run(int i, char *name, unsigned *grid, unsigned *block, uint64_t *params) {
  if (i < 0 || i >= runs || i < runs - LOG_SIZE) return -1;
  const Run *r = &run_log[i % LOG_SIZE];
  strcpy(name, r->fn->name);
  *grid = r->grid;
  *block = r->block;
  memcpy(params, r->params, sizeof r->params);
  return r->fn->nparams;
}
CUresult cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = (void *)32; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; return 0; }
CUresult cuEventCreate(void **e, unsigned flags) { (void)flags; *e = (void *)48; return 0; }
CUresult cuEventRecord(void *e, void *s) { (void)e; (void)s; return 0; }
CUresult cuEventSynchronize(void *e) { (void)e; return 0; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 0; return 0; }
CUresult cuEventDestroy_v2(void *e) { (void)e; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
  *s = r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : r == 801 ? "CUDA_ERROR_NOT_SUPPORTED" : "CUDA_ERROR";
  return 0;
}
CUresult cuGetErrorString(CUresult r, const char **s) { *s = r == 2 ? "out of memory" : "an error"; return 0; }

int fake_launch_count(void) { return launches; }
void fake_last_launch(unsigned *grid, unsigned *block, uint64_t *first_param) {
  *grid = last_grid; *block = last_block; *first_param = last_first_param;
}

/* NVRTC: the "binary" is the source itself */
typedef struct { char *src; } Program;
int nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 0; return 0; }
int nvrtcGetNumSupportedArchs(int *n) { *n = 2; return 0; }
int nvrtcGetSupportedArchs(int *a) { a[0] = 80; a[1] = 90; return 0; }
int nvrtcCreateProgram(void **prog, const char *src, const char *name, int nh, void *h, void *hn) {
  (void)name; (void)nh; (void)h; (void)hn;
  Program *p = malloc(sizeof *p);
  p->src = strdup(src);
  *prog = p;
  return 0;
}
int nvrtcCompileProgram(void *prog, int n, const char **opts) {
  (void)n; (void)opts; return strstr(((Program *)prog)->src, "#error") ? 6 : 0; /* 6: NVRTC_ERROR_COMPILATION */
}
int nvrtcGetProgramLogSize(void *prog, size_t *n) { (void)prog; *n = 20; return 0; }
int nvrtcGetProgramLog(void *prog, char *log) { (void)prog; strcpy(log, "fake: #error found"); return 0; }
int nvrtcGetCUBINSize(void *prog, size_t *n) { *n = strlen(((Program *)prog)->src) + 1; return 0; }
int nvrtcGetCUBIN(void *prog, char *out) { strcpy(out, ((Program *)prog)->src); return 0; }
int nvrtcGetPTXSize(void *prog, size_t *n) { return nvrtcGetCUBINSize(prog, n); }
int nvrtcGetPTX(void *prog, char *out) { return nvrtcGetCUBIN(prog, out); }
int nvrtcDestroyProgram(void **prog) { Program *p = *prog; free(p->src); free(p); *prog = 0; return 0; }
const char *nvrtcGetErrorString(int r) { return r == 6 ? "NVRTC_ERROR_COMPILATION" : "NVRTC_ERROR"; }
