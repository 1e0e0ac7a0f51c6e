/*
 * crash-shim: an LD_PRELOAD library that numbers every file-system mutation a process makes under
 * one folder and kills the process with SIGKILL at the K-th one, before the call runs.
 *
 * Environment:
 *   SPLITFIT_CRASH_DIR    absolute folder; only calls whose path (or whose fd's path, tracked from
 *                         open) lies under it are counted. Unset: the shim does nothing.
 *   SPLITFIT_CRASH_AT     K >= 1: SIGKILL at the K-th counted call (the call itself never runs).
 *                         Unset or 0: count only.
 *   SPLITFIT_CRASH_TRACE  file to append one line per counted call: "<n> <op> <path>".
 *   SPLITFIT_CRASH_OPENS  "all" also counts read-only opens. By default an open counts only when it
 *                         can change the disk (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC): a kill before a
 *                         read-only open leaves the same bytes as a kill after the previous counted call.
 *
 * Counted: open/open64/openat/openat64/creat (+ glibc's fortified __open_2 forms), write, pwrite,
 * writev, pwritev, ftruncate, fallocate, fsync, fdatasync, rename, renameat, renameat2, unlink,
 * unlinkat, mkdir, mkdirat, rmdir, truncate. These are the libc entry points libuv (Node's fs) and
 * LevelDB's posix Env call; calls glibc makes internally (fopen/fwrite) bypass the PLT and are not
 * seen, which only hides LevelDB's advisory LOG text file.
 *
 * Threads: libuv's pool and LevelDB's compaction thread call libc concurrently, so the counter is
 * atomic; every thread whose number reaches K stops (kill, then wait for it), so no call numbered
 * K or later ever runs. Node must run with UV_USE_IO_URING=0 so that libuv does not bypass libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

static char root[PATH_MAX];
static size_t root_len;
static int active;
static int count_all_opens;
static unsigned long kill_at;
static int trace_fd = -1;
static unsigned long counter;
/* For fds opened on a path under root: 1, or 2 when opened for writing; cleared by close. */
static unsigned char tracked[MAX_FD];

__attribute__((constructor)) static void crash_shim_init(void) {
  const char *dir = getenv("SPLITFIT_CRASH_DIR");
  if (dir == NULL || dir[0] != '/') return;
  root_len = strlen(dir);
  while (root_len > 1 && dir[root_len - 1] == '/') root_len--;
  if (root_len >= sizeof root) return;
  memcpy(root, dir, root_len);
  root[root_len] = '\0';
  const char *at = getenv("SPLITFIT_CRASH_AT");
  kill_at = at ? strtoul(at, NULL, 10) : 0;
  const char *opens = getenv("SPLITFIT_CRASH_OPENS");
  count_all_opens = opens != NULL && strcmp(opens, "all") == 0;
  const char *trace = getenv("SPLITFIT_CRASH_TRACE");
  if (trace != NULL && trace[0] != '\0') {
    /* Raw syscalls: the shim's own I/O must not go through its wrappers. */
    trace_fd = (int)syscall(SYS_openat, AT_FDCWD, trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  active = 1;
}

/* The next definition of `name` (libc's), looked up once; racing threads store the same pointer. */
#define REAL(name)                                                  \
  static __typeof__(name) *real_##name;                             \
  if (__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE) == NULL)      \
    __atomic_store_n(&real_##name, (__typeof__(name) *)dlsym(RTLD_NEXT, #name), __ATOMIC_RELEASE)

static int under_root(const char *abs) {
  return strncmp(abs, root, root_len) == 0 && (abs[root_len] == '/' || abs[root_len] == '\0');
}

/* Whether `path`, relative to `dirfd` (or the cwd), lies under root. */
static int path_under(int dirfd, const char *path) {
  if (!active || path == NULL) return 0;
  if (path[0] == '/') return under_root(path);
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (syscall(SYS_getcwd, base, sizeof base) < 0) return 0;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = syscall(SYS_readlink, link, base, sizeof base - 1);
    if (n < 0) return 0;
    base[n] = '\0';
  }
  char full[PATH_MAX * 2];
  snprintf(full, sizeof full, "%s/%s", base, path);
  return under_root(full);
}

static int fd_under(int fd) { return active && fd >= 0 && fd < MAX_FD && __atomic_load_n(&tracked[fd], __ATOMIC_RELAXED); }

/* Numbers one counted call; traces it; kills the process when its number reaches K. */
static void counted(const char *op, int dirfd, const char *path, int fd) {
  unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
  if (trace_fd >= 0) {
    char where[PATH_MAX];
    if (path != NULL) {
      snprintf(where, sizeof where, "%s%s", path[0] == '/' || dirfd == AT_FDCWD ? "" : "(dirfd)/", path);
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
      ssize_t len = syscall(SYS_readlink, link, where, sizeof where - 1);
      where[len < 0 ? 0 : len] = '\0';
    }
    char line[PATH_MAX + 64];
    int len = snprintf(line, sizeof line, "%lu %s %s\n", n, op, where);
    if (len > 0) syscall(SYS_write, trace_fd, line, (size_t)(len < (int)sizeof line ? len : (int)sizeof line - 1));
  }
  if (kill_at != 0 && n >= kill_at) {
    syscall(SYS_kill, getpid(), SIGKILL);
    for (;;) pause();
  }
}

static void track(int fd, int state) {
  if (fd >= 0 && fd < MAX_FD) __atomic_store_n(&tracked[fd], (unsigned char)state, __ATOMIC_RELAXED);
}

static int open_counts(int flags) { return count_all_opens || (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

typedef int (*openat_fn)(int, const char *, int, ...);

static int do_open(const char *op, openat_fn real, int dirfd, const char *path, int flags, mode_t mode) {
  int under = path_under(dirfd, path);
  if (under && open_counts(flags)) counted(op, dirfd, path, -1);
  int fd = real(dirfd, path, flags, mode);
  if (fd >= 0) track(fd, under ? ((flags & (O_WRONLY | O_RDWR)) ? 2 : 1) : 0);
  return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
  REAL(openat);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open("openat", real_openat, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  REAL(openat64);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open("openat", real_openat64, dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...) {
  REAL(openat);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open("open", real_openat, AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
  REAL(openat64);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open("open", real_openat64, AT_FDCWD, path, flags, mode);
}

int __open_2(const char *path, int flags) {
  REAL(openat);
  return do_open("open", real_openat, AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags) {
  REAL(openat64);
  return do_open("open", real_openat64, AT_FDCWD, path, flags, 0);
}

int __openat_2(int dirfd, const char *path, int flags) {
  REAL(openat);
  return do_open("openat", real_openat, dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char *path, int flags) {
  REAL(openat64);
  return do_open("openat", real_openat64, dirfd, path, flags, 0);
}

int creat(const char *path, mode_t mode) {
  REAL(openat);
  return do_open("creat", real_openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) {
  REAL(openat64);
  return do_open("creat", real_openat64, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
  REAL(close);
  track(fd, 0);
  return real_close(fd);
}

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write);
  if (fd_under(fd)) counted("write", AT_FDCWD, NULL, fd);
  return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite);
  if (fd_under(fd)) counted("pwrite", AT_FDCWD, NULL, fd);
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite64);
  if (fd_under(fd)) counted("pwrite", AT_FDCWD, NULL, fd);
  return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev);
  if (fd_under(fd)) counted("writev", AT_FDCWD, NULL, fd);
  return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev);
  if (fd_under(fd)) counted("pwritev", AT_FDCWD, NULL, fd);
  return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev64);
  if (fd_under(fd)) counted("pwritev", AT_FDCWD, NULL, fd);
  return real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
  REAL(pwritev2);
  if (fd_under(fd)) counted("pwritev", AT_FDCWD, NULL, fd);
  return real_pwritev2(fd, iov, cnt, off, flags);
}

int ftruncate(int fd, off_t len) {
  REAL(ftruncate);
  if (fd_under(fd)) counted("ftruncate", AT_FDCWD, NULL, fd);
  return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len) {
  REAL(ftruncate64);
  if (fd_under(fd)) counted("ftruncate", AT_FDCWD, NULL, fd);
  return real_ftruncate64(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  REAL(fallocate);
  if (fd_under(fd)) counted("fallocate", AT_FDCWD, NULL, fd);
  return real_fallocate(fd, mode, off, len);
}

int fsync(int fd) {
  REAL(fsync);
  if (fd_under(fd)) counted("fsync", AT_FDCWD, NULL, fd);
  return real_fsync(fd);
}

int fdatasync(int fd) {
  REAL(fdatasync);
  if (fd_under(fd)) counted("fdatasync", AT_FDCWD, NULL, fd);
  return real_fdatasync(fd);
}

int truncate(const char *path, off_t len) {
  REAL(truncate);
  if (path_under(AT_FDCWD, path)) counted("truncate", AT_FDCWD, path, -1);
  return real_truncate(path, len);
}

int rename(const char *from, const char *to) {
  REAL(rename);
  if (path_under(AT_FDCWD, to)) counted("rename", AT_FDCWD, to, -1);
  else if (path_under(AT_FDCWD, from)) counted("rename", AT_FDCWD, from, -1);
  return real_rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
  REAL(renameat);
  if (path_under(tofd, to)) counted("renameat", tofd, to, -1);
  else if (path_under(fromfd, from)) counted("renameat", fromfd, from, -1);
  return real_renameat(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags) {
  REAL(renameat2);
  if (path_under(tofd, to)) counted("renameat", tofd, to, -1);
  else if (path_under(fromfd, from)) counted("renameat", fromfd, from, -1);
  return real_renameat2(fromfd, from, tofd, to, flags);
}

int unlink(const char *path) {
  REAL(unlink);
  if (path_under(AT_FDCWD, path)) counted("unlink", AT_FDCWD, path, -1);
  return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
  REAL(unlinkat);
  if (path_under(dirfd, path)) counted("unlinkat", dirfd, path, -1);
  return real_unlinkat(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode) {
  REAL(mkdir);
  if (path_under(AT_FDCWD, path)) counted("mkdir", AT_FDCWD, path, -1);
  return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
  REAL(mkdirat);
  if (path_under(dirfd, path)) counted("mkdirat", dirfd, path, -1);
  return real_mkdirat(dirfd, path, mode);
}

int rmdir(const char *path) {
  REAL(rmdir);
  if (path_under(AT_FDCWD, path)) counted("rmdir", AT_FDCWD, path, -1);
  return real_rmdir(path);
}

/*
 * stdio: classic-level's LevelDB writes its log, MANIFEST and tables through fopen/fwrite/fflush
 * (its writable files are FILE*), and glibc's own write inside fflush bypasses the wrapper above.
 * A stream is tracked by its fd; fclose clears it (glibc's internal close is not seen either).
 */
/* glibc's optimizing headers define these as macros; the shim needs the functions. */
#undef fwrite_unlocked
#undef fflush_unlocked

static int stream_under(FILE *stream) { return active && stream != NULL && fd_under(fileno(stream)); }

/* fclose flushes a writable stream; closing a read-only one changes nothing on disk. */
static int stream_writes(FILE *stream) { return stream_under(stream) && __atomic_load_n(&tracked[fileno(stream)], __ATOMIC_RELAXED) == 2; }

static int mode_writes(const char *mode) { return mode != NULL && (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+')); }

static FILE *do_fopen(const char *op, FILE *(*real)(const char *, const char *), const char *path, const char *mode) {
  int under = path_under(AT_FDCWD, path);
  if (under && (count_all_opens || mode_writes(mode))) counted(op, AT_FDCWD, path, -1);
  FILE *stream = real(path, mode);
  if (stream != NULL) track(fileno(stream), under ? (mode_writes(mode) ? 2 : 1) : 0);
  return stream;
}

FILE *fopen(const char *path, const char *mode) {
  REAL(fopen);
  return do_fopen("fopen", real_fopen, path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
  REAL(fopen64);
  return do_fopen("fopen", real_fopen64, path, mode);
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *stream) {
  REAL(fwrite);
  if (stream_under(stream)) counted("fwrite", AT_FDCWD, NULL, fileno(stream));
  return real_fwrite(buf, size, n, stream);
}

size_t fwrite_unlocked(const void *buf, size_t size, size_t n, FILE *stream) {
  REAL(fwrite_unlocked);
  if (stream_under(stream)) counted("fwrite", AT_FDCWD, NULL, fileno(stream));
  return real_fwrite_unlocked(buf, size, n, stream);
}

int fflush(FILE *stream) {
  REAL(fflush);
  if (stream_under(stream)) counted("fflush", AT_FDCWD, NULL, fileno(stream));
  return real_fflush(stream);
}

int fflush_unlocked(FILE *stream) {
  REAL(fflush_unlocked);
  if (stream_under(stream)) counted("fflush", AT_FDCWD, NULL, fileno(stream));
  return real_fflush_unlocked(stream);
}

int fclose(FILE *stream) {
  REAL(fclose);
  if (stream_under(stream)) {
    if (stream_writes(stream)) counted("fclose", AT_FDCWD, NULL, fileno(stream));
    track(fileno(stream), 0);
  }
  return real_fclose(stream);
}
