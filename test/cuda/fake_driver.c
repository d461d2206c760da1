/* A stand-in for libcuda and NVRTC, for testing the CUDA device's host side where there is no GPU.

   Device memory is host memory, copies are memcpy, and a launch runs nothing: it is counted and its grid, block
   and parameters are kept for the test to read (fake_launch_count, fake_last_launch). "Compiling" returns the
   source as the binary. What it checks is the plumbing: ctypes signatures, staging, chunked copies, launch
   geometry, the out-of-memory path. Built by test_fake_driver.py as libcuda.so.1 (and loaded as NVRTC too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
static const size_t TOTAL = (size_t)1 << 30; /* a 1 GiB "GPU" */
static size_t used;
static int launches;
static unsigned last_grid, last_block;
static uint64_t last_first_param;

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
CUresult cuModuleGetFunction(void **fn, void *module, const char *name) {
  (void)module; *fn = strdup(name); return 0;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
  (void)f; (void)gy; (void)gz; (void)by; (void)bz; (void)smem; (void)stream; (void)extra;
  if (gx == 0 || bx == 0 || bx > 1024) return 1; /* CUDA_ERROR_INVALID_VALUE */
  launches++;
  last_grid = gx;
  last_block = bx;
  last_first_param = params ? *(uint64_t *)params[0] : 0;
  return 0;
}
CUresult cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = (void *)32; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; return 0; }
CUresult cuEventCreate(void **e, unsigned flags) { (void)flags; *e = (void *)48; return 0; }
CUresult cuEventRecord(void *e, void *s) { (void)e; (void)s; return 0; }
CUresult cuEventSynchronize(void *e) { (void)e; return 0; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 0; return 0; }
CUresult cuEventDestroy_v2(void *e) { (void)e; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) { *s = r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR"; return 0; }
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
