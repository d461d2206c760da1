/*
 * boltgrad's CPU runtime: a persistent thread pool, aligned allocation, and the launch list.
 *
 * A kernel is a function over a slice [start, end) of its outer loop:
 *
 *     void kernel(void **bufs, const int64_t *vars, int64_t start, int64_t end);
 *
 * bolt_run() executes a whole list of launches in one native call, in order, each seeing the writes of the ones
 * before it. A launch with little work is one *unit* of work (a run of such launches is one unit, run in order
 * by one thread); a larger one is cut into a few contiguous chunks per thread, each a unit. The units of the list
 * are numbered in order, and the threads take numbers from one shared counter (work sharing), so a thread the
 * OS has descheduled holds up only the chunk it has, not every launch after it. A unit of launch i starts once
 * every unit before launch i has finished: one counter of finished units says so, and no thread ever waits for
 * another to *arrive* anywhere. Workers spin for a short while after a job (so back-to-back jobs skip the
 * wake-up cost) and then sleep on a condition variable (so an idle process costs no CPU).
 *
 * The file is self-contained (no header needed to build it) and uses only C11 atomics and POSIX threads, so
 * gcc and clang build it on Linux and macOS alike. Everything platform-specific sits in the first section.
 */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* ---------------------------------------------------------------- platform details ---------------------------- */

#if defined(_WIN32)
#error "bolt_runtime needs POSIX threads (Linux, macOS, BSD)"
#endif

#if defined(__x86_64__) || defined(__i386__)
#define BOLT_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define BOLT_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define BOLT_CPU_RELAX() ((void)0)
#endif

#define BOLT_EXPORT __attribute__((visibility("default")))
#define BOLT_CACHE_LINE 64

static int64_t bolt_now_ns(void) {
  /* CLOCK_MONOTONIC exists on Linux and on macOS 10.12+. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- public types --------------------------------- */

typedef void (*bolt_kernel)(void **bufs, const int64_t *vars, int64_t start, int64_t end);

/* Five 8-byte fields on every 64-bit target; the Python side packs launches as int64[5] records. */
typedef struct {
  bolt_kernel fn;
  void **bufs;
  const int64_t *vars;
  int64_t size; /* trip count of the outer loop */
  int64_t cost; /* estimated work of one outer iteration */
} bolt_launch;

/* The exported API, called from Python through ctypes (boltgrad/device/cpu.py declares the same signatures). */
int bolt_init(int nthreads);
int bolt_threads(void);
void bolt_run(const bolt_launch *launches, int64_t count);
void bolt_shutdown(void);
void *bolt_alloc(int64_t nbytes);
void *bolt_alloc_zeroed(int64_t nbytes);
void bolt_free(void *ptr, int64_t nbytes);

/* ---------------------------------------------------------------- tuning ---------------------------------------- */

#define BOLT_MAX_THREADS 256
/* Below this many work units (size * cost) waking the other threads costs more than it saves. */
#define BOLT_MIN_PARALLEL_WORK 32768
/* How long an idle thread spins before it sleeps: longer than the Python gap between two back-to-back calls. */
#define BOLT_SPIN_NS 200000
/* Rounds of pure spinning (a pause each, a few microseconds in all) before a waiter starts yielding its core. */
#define BOLT_PURE_SPINS 2048
/* Chunks per thread of a parallel launch: more lets a thread that got less of the machine take fewer of them. */
#define BOLT_CHUNKS_PER_THREAD 2

/* ---------------------------------------------------------------- pool state ------------------------------------ */

/* Each hot atomic gets its own cache line so spinning readers do not slow the writers of its neighbours. */
typedef struct {
  _Alignas(BOLT_CACHE_LINE) atomic_uint value;
} bolt_padded_counter;

static bolt_padded_counter job_epoch;   /* bumped once per parallel job (and to stop the workers) */
static bolt_padded_counter next_unit;   /* the next unit of the current job a thread may take */
static bolt_padded_counter units_done;  /* units of the current job that have finished */
static bolt_padded_counter job_open;    /* 1 while threads may join the current job */
static bolt_padded_counter job_members; /* workers inside the current job (they read its launch list) */
static atomic_int sleepers;              /* threads inside pthread_cond_wait, or about to be */
static atomic_int stop_workers;

static pthread_mutex_t sleep_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
/* Serialises parallel jobs, bolt_init and bolt_shutdown: two Python threads may call bolt_run at once, since
 * ctypes releases the GIL during the call. */
static pthread_mutex_t run_mutex = PTHREAD_MUTEX_INITIALIZER;

static atomic_int wanted_threads = 1; /* what bolt_init asked for, including the calling thread */
static atomic_int pool_size = 1;      /* threads that exist to take part in a job, including the caller */
static int workers_running = 0;       /* pool_size - 1 worker threads exist */
static unsigned workers_epoch0 = 0;   /* job_epoch when the workers were created */
static pthread_t workers[BOLT_MAX_THREADS];

/* The current job; written before job_epoch is bumped, read by workers after they see the bump. */
static const bolt_launch *job_launches;
static int64_t job_count;
static int job_threads;
static unsigned job_units;

/* ---------------------------------------------------------------- waiting --------------------------------------- */

/* Wait until *counter differs from old: spin, then yield, for BOLT_SPIN_NS in all, then sleep.
 *
 * Pure spinning is fastest when every thread has a core of its own. When there are more threads than free cores
 * (other processes, or BOLT_THREADS above the core count), a spinning waiter would hold the core the thread it
 * waits for needs, so after a short pure spin it yields the core on every round.
 *
 * The sleeper increments `sleepers` and then re-reads the counter; the waker bumps the counter and then reads
 * `sleepers` (bolt_bump). Both are sequentially consistent, so at least one of them sees the other's write:
 * either the sleeper sees the new value and never sleeps, or the waker sees a sleeper and broadcasts under the
 * mutex, which the sleeper holds until pthread_cond_wait releases it. No wake-up is lost. */
static void bolt_wait_change(atomic_uint *counter, unsigned old) {
  int64_t deadline = 0;
  for (unsigned spins = 1;; spins++) {
    if (atomic_load_explicit(counter, memory_order_acquire) != old) return;
    if (spins < BOLT_PURE_SPINS) {
      BOLT_CPU_RELAX();
    } else {
      sched_yield();
    }
    if ((spins & 63) == 0) { /* reading the clock costs more than a pause, so do it rarely */
      int64_t now = bolt_now_ns();
      if (deadline == 0) {
        deadline = now + BOLT_SPIN_NS;
      } else if (now > deadline) {
        break;
      }
    }
  }
  pthread_mutex_lock(&sleep_mutex);
  atomic_fetch_add(&sleepers, 1);
  while (atomic_load(counter) == old) pthread_cond_wait(&sleep_cond, &sleep_mutex);
  atomic_fetch_sub(&sleepers, 1);
  pthread_mutex_unlock(&sleep_mutex);
}

/* Bump *counter (publishing every write made before it) and wake any sleeper. */
static void bolt_bump(atomic_uint *counter) {
  atomic_fetch_add(counter, 1);
  if (atomic_load(&sleepers) > 0) {
    pthread_mutex_lock(&sleep_mutex);
    pthread_cond_broadcast(&sleep_cond);
    pthread_mutex_unlock(&sleep_mutex);
  }
}

/* Wait until the counter, which only grows within a job, has reached target (wrapping arithmetic). */
static void bolt_wait_reach(atomic_uint *counter, unsigned target) {
  for (;;) {
    unsigned now = atomic_load_explicit(counter, memory_order_acquire);
    if ((int)(now - target) >= 0) return;
    bolt_wait_change(counter, now);
  }
}

/* ---------------------------------------------------------------- running launches ------------------------------ */

static inline int bolt_is_parallel(const bolt_launch *launch) {
  if (launch->size < 2) return 0;
  int64_t cost = launch->cost > 0 ? launch->cost : 1;
  /* Both operands are below the threshold when the product is computed, so it cannot overflow. */
  if (launch->size >= BOLT_MIN_PARALLEL_WORK || cost >= BOLT_MIN_PARALLEL_WORK) return 1;
  return launch->size * cost >= BOLT_MIN_PARALLEL_WORK;
}

/* A span of the list: launches [first, end) and units [base, base + units). A parallel launch is a span of its
 * own, one unit per chunk; a run of serial launches is a span of one unit. */
typedef struct {
  int64_t first, end;
  unsigned base, units;
  int parallel; /* one parallel launch, cut into chunks (else a run of serial launches, one unit) */
} bolt_span;

static inline unsigned bolt_chunks(const bolt_launch *launch, int nthreads) {
  int64_t most = (int64_t)nthreads * BOLT_CHUNKS_PER_THREAD;
  return (unsigned)(launch->size < most ? launch->size : most);
}

/* Step *span to the next span of the list (units == 0 past its end). Every thread steps through the same spans. */
static void bolt_next_span(const bolt_launch *launches, int64_t count, int nthreads, bolt_span *span) {
  span->first = span->end;
  span->base += span->units;
  span->units = 0;
  if (span->first >= count) return;
  span->parallel = bolt_is_parallel(&launches[span->first]);
  if (span->parallel) {
    span->end = span->first + 1;
    span->units = bolt_chunks(&launches[span->first], nthreads);
    return;
  }
  span->end = span->first;
  while (span->end < count && !bolt_is_parallel(&launches[span->end])) span->end++;
  span->units = 1;
}

/* Chunk c of n of the launch: contiguous, the first size % n one longer. */
static inline void bolt_run_chunk(const bolt_launch *launch, int64_t c, int64_t n) {
  int64_t base = launch->size / n, extra = launch->size % n;
  int64_t start = c * base + (c < extra ? c : extra);
  int64_t end = start + base + (c < extra ? 1 : 0);
  if (start < end) launch->fn(launch->bufs, launch->vars, start, end);
}

/* Take units of the current job until none are left. Units are numbered in list order, so "every unit before
 * this span has finished" is "units_done has reached the span's base": a unit of a span can only start once
 * the count has reached its base, so the count cannot reach it through units of later spans. */
static void bolt_work(const bolt_launch *launches, int64_t count, int nthreads, unsigned total) {
  bolt_span span = {0, 0, 0, 0, 0};
  bolt_next_span(launches, count, nthreads, &span);
  for (;;) {
    unsigned unit = atomic_fetch_add_explicit(&next_unit.value, 1, memory_order_relaxed);
    if (unit >= total) return;
    while (unit >= span.base + span.units) bolt_next_span(launches, count, nthreads, &span);
    bolt_wait_reach(&units_done.value, span.base);
    if (span.parallel) {
      bolt_run_chunk(&launches[span.first], unit - span.base, span.units);
    } else {
      for (int64_t i = span.first; i < span.end; i++) {
        if (launches[i].size > 0) launches[i].fn(launches[i].bufs, launches[i].vars, 0, launches[i].size);
      }
    }
    bolt_bump(&units_done.value); /* seq_cst: publishes the unit's writes to whoever waits for the count */
  }
}

static void *bolt_worker_main(void *arg) {
  (void)arg;
  unsigned seen = workers_epoch0; /* not a fresh load: a job may be published before this thread first runs */
  for (;;) {
    bolt_wait_change(&job_epoch.value, seen);
    seen = atomic_load_explicit(&job_epoch.value, memory_order_acquire);
    if (atomic_load(&stop_workers)) break;
    /* Join, then check the job is still open: the caller closes it and then waits for the members to leave, so
     * either it sees this thread as a member or this thread sees the job closed (both sides are seq_cst). */
    atomic_fetch_add(&job_members.value, 1);
    if (atomic_load(&job_open.value)) bolt_work(job_launches, job_count, job_threads, job_units);
    atomic_fetch_sub(&job_members.value, 1);
  }
  return NULL;
}

/* ---------------------------------------------------------------- pool lifetime (hold run_mutex) ---------------- */

static void bolt_stop_workers_locked(void) {
  if (workers_running == 0) return;
  atomic_store(&stop_workers, 1);
  bolt_bump(&job_epoch.value);
  for (int i = 0; i < workers_running; i++) pthread_join(workers[i], NULL);
  workers_running = 0;
  atomic_store(&stop_workers, 0);
  atomic_store(&pool_size, 1);
}

static void bolt_start_workers_locked(void) {
  workers_epoch0 = atomic_load(&job_epoch.value);
  int started = 0;
  int wanted = atomic_load(&wanted_threads);
  for (int i = 1; i < wanted; i++) {
    if (pthread_create(&workers[started], NULL, bolt_worker_main, (void *)(intptr_t)i) != 0) break;
    started++;
  }
  /* If the system refuses some threads, already started ones have tids 1..started, which still cover a pool of
   * started + 1 threads. */
  workers_running = started;
  atomic_store(&pool_size, started + 1);
}

/* After fork() only the forking thread exists in the child: forget the workers (they are not there) and restart
 * them lazily on the next parallel job. The prepare handler holds run_mutex so no job is half-run at the fork. */
static void bolt_atfork_prepare(void) { pthread_mutex_lock(&run_mutex); }
static void bolt_atfork_parent(void) { pthread_mutex_unlock(&run_mutex); }
static void bolt_atfork_child(void) {
  pthread_mutex_init(&sleep_mutex, NULL);
  pthread_cond_init(&sleep_cond, NULL);
  atomic_store(&sleepers, 0);
  atomic_store(&stop_workers, 0);
  workers_running = 0;
  atomic_store(&pool_size, 1);
  pthread_mutex_unlock(&run_mutex);
}

static pthread_once_t bolt_atfork_once = PTHREAD_ONCE_INIT;
static void bolt_register_atfork(void) {
  pthread_atfork(bolt_atfork_prepare, bolt_atfork_parent, bolt_atfork_child);
}

/* ---------------------------------------------------------------- public API ------------------------------------ */

/* Start (or resize) the pool to nthreads threads including the caller; returns the size actually reached. */
BOLT_EXPORT int bolt_init(int nthreads) {
  pthread_once(&bolt_atfork_once, bolt_register_atfork);
  if (nthreads < 1) nthreads = 1;
  if (nthreads > BOLT_MAX_THREADS) nthreads = BOLT_MAX_THREADS;
  pthread_mutex_lock(&run_mutex);
  if (nthreads != atomic_load(&wanted_threads) || workers_running + 1 != nthreads) {
    bolt_stop_workers_locked();
    atomic_store(&wanted_threads, nthreads);
    bolt_start_workers_locked();
  }
  int size = atomic_load(&pool_size);
  pthread_mutex_unlock(&run_mutex);
  return size;
}

BOLT_EXPORT int bolt_threads(void) { return atomic_load(&pool_size); }

BOLT_EXPORT void bolt_run(const bolt_launch *launches, int64_t count) {
  /* Fast path: nothing worth splitting, so run the list on this thread without touching the pool. */
  int parallel = 0;
  if (atomic_load_explicit(&wanted_threads, memory_order_relaxed) > 1) {
    for (int64_t i = 0; i < count && !parallel; i++) parallel = bolt_is_parallel(&launches[i]);
  }
  if (!parallel) {
    for (int64_t i = 0; i < count; i++) {
      if (launches[i].size > 0) launches[i].fn(launches[i].bufs, launches[i].vars, 0, launches[i].size);
    }
    return;
  }
  pthread_mutex_lock(&run_mutex);
  if (workers_running + 1 < atomic_load(&wanted_threads)) bolt_start_workers_locked(); /* first job after fork */
  int nthreads = atomic_load(&pool_size);
  bolt_span span = {0, 0, 0, 0, 0};
  unsigned total = 0;
  for (bolt_next_span(launches, count, nthreads, &span); span.units; bolt_next_span(launches, count, nthreads, &span))
    total += span.units;
  job_launches = launches;
  job_count = count;
  job_threads = nthreads;
  job_units = total;
  atomic_store(&next_unit.value, 0);
  atomic_store(&units_done.value, 0);
  atomic_store(&job_open.value, 1);
  if (nthreads > 1) bolt_bump(&job_epoch.value);
  bolt_work(launches, count, nthreads, total);
  bolt_wait_reach(&units_done.value, total);
  atomic_store(&job_open.value, 0);
  while (atomic_load(&job_members.value) != 0) sched_yield(); /* late joiners find no unit left and leave */
  pthread_mutex_unlock(&run_mutex);
}

/* Stop the workers; a later bolt_init starts them again. */
BOLT_EXPORT void bolt_shutdown(void) {
  pthread_mutex_lock(&run_mutex);
  bolt_stop_workers_locked();
  atomic_store(&wanted_threads, 1);
  pthread_mutex_unlock(&run_mutex);
}

/* Blocks of at least this many bytes are pages of their own (mmap): freeing one gives its memory back to the OS
 * at once, and a new one is zero pages that take no memory until written. */
#define BOLT_MMAP_MIN ((size_t)1 << 16)

static size_t bolt_rounded(int64_t nbytes) {
  size_t rounded = ((size_t)nbytes + 63) & ~(size_t)63;
  return rounded == 0 ? 64 : rounded;
}

/* Blocks of at least this many bytes ask for transparent huge pages (where the OS gives them only on request):
 * a kernel streaming 64 MB then walks 32 pages of 2 MB instead of 16384 of 4 KB, which the TLB and the
 * prefetchers handle better (a C loop summing 16M floats at 2 threads: 1.9-2.2 -> 1.4-1.5 ms). numpy does the
 * same from 4 MB. */
#define BOLT_HUGE_MIN ((size_t)4 << 20)

static void *bolt_alloc_block(int64_t nbytes, int huge) {
  if (nbytes < 0) return NULL;
  size_t rounded = bolt_rounded(nbytes);
  if (rounded >= BOLT_MMAP_MIN) {
    void *pages = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (huge && rounded >= BOLT_HUGE_MIN) madvise(pages, rounded, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return pages;
  }
  void *ptr = NULL;
  if (posix_memalign(&ptr, 64, rounded) != 0) return NULL;
  return ptr;
}

/* 64-byte aligned memory (a cache line, and a full AVX-512 vector); never NULL for nbytes == 0. */
BOLT_EXPORT void *bolt_alloc(int64_t nbytes) { return bolt_alloc_block(nbytes, 1); }

/* Memory that reads as zeros. A large block is fresh small pages: a page never written stays out of resident
 * memory (a KV cache of the full context costs only the positions used), which huge pages would not keep. */
BOLT_EXPORT void *bolt_alloc_zeroed(int64_t nbytes) {
  void *ptr = bolt_alloc_block(nbytes, 0);
  if (ptr != NULL && bolt_rounded(nbytes) < BOLT_MMAP_MIN) memset(ptr, 0, bolt_rounded(nbytes));
  return ptr;
}

/* nbytes: as given to bolt_alloc (it says how the block was made). */
BOLT_EXPORT void bolt_free(void *ptr, int64_t nbytes) {
  if (ptr == NULL) return;
  if (bolt_rounded(nbytes) >= BOLT_MMAP_MIN)
    munmap(ptr, bolt_rounded(nbytes));
  else
    free(ptr);
}
