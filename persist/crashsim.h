/* crashsim.h -- power-loss simulation in the I/O seam (private to the
 * store; see crashsim.c for how it works).
 *
 * A kill -9 keeps everything the kernel already has; a power cut loses
 * every write not yet fsynced.  With crash simulation armed, every sys_*
 * call of the seam (persist/sys.c) is routed here: the write is done, and
 * what it changed since the file's last fsync is remembered (old content
 * of overwritten sectors, the size the file had when last synced), as are
 * directory entries created, renamed or unlinked since their directory's
 * last fsync.  At the chosen seam call the process "loses power": every
 * file is put back to what was synced (appends dropped, overwrites
 * reverted, or torn: each sector old or new at random), every entry not
 * yet durable is undone (newest first), a line saying where it cut is
 * appended to the report file, and the process SIGKILLs itself.
 *
 * Spec (RK_CRASHSIM in the environment, read by sys_install(); or
 * crashsim_configure()), options separated by commas:
 *   at:N          cut power at the Nth seam call (any op; from 1)
 *   seed:S        cut at a call drawn from S (1..within), and draw the
 *                 torn sectors from S too
 *   within:M      the range for seed (default 10000)
 *   serving       count calls only from crashsim_serving() on (the node
 *                 calls it once it serves); calls before are tracked, not
 *                 counted
 *   torn          unsynced sectors survive at random, sector by sector
 *                 (overwrites: old or new; appends: a random prefix of
 *                 whole sectors), instead of all reverted / dropped
 *   sector:B      the sector size, a power of two, 512..65536 (default 512)
 *   report:PATH   append one line per cut to PATH (must come last: PATH
 *                 is the rest of the spec)
 * Example: RK_CRASHSIM=seed:7,within:4000,serving,torn,sector:4096,report:/tmp/cuts
 *
 * Report line (one per cut, then one indented line per file or entry it
 * rolled back):
 *   crash call=N op=write target=PATH files=F bytes_dropped=B
 *         sectors_reverted=R sectors_torn=T entries_undone=E
 *
 * Limits: only I/O through the seam is seen (a plain write() or mkdir()
 * elsewhere is kept as if it were synced); the rollback acts on the
 * files' inodes and names as the process knows them, not on a block
 * device. */
#ifndef RK_CRASHSIM_H
#define RK_CRASHSIM_H

#include <sys/types.h>

/* Arms crash simulation with spec (above); NULL or "" disarms it (what was
 * tracked is forgotten).  0, or RK_EINVAL for a spec it cannot parse
 * (nothing armed then).  Not concurrent with seam calls. */
int crashsim_configure(const char *spec);

/* Non-zero when armed: the seam then calls the crashsim_* below instead of
 * the system.  One relaxed atomic load. */
int crashsim_active(void);

/* From now on, seam calls count towards the cut (option "serving").  The
 * node calls it once it serves; a no-op when disarmed. */
void crashsim_serving(void);

/* Cuts the power now, as the chosen call would (report op "cut"): for a
 * test that picks the moment by what it did rather than by a count.  Only
 * when armed; never returns. */
_Noreturn void crashsim_cut(void);

/* The seam's operations under simulation: same arguments and results as
 * the sys_* they stand for (POSIX: -1 and errno).  Any thread; they are
 * serialised by one lock.  The call chosen for the cut never returns. */
ssize_t crashsim_write(int fd, const void *buf, size_t n);
ssize_t crashsim_pwrite(int fd, const void *buf, size_t n, off_t off);
int crashsim_fsync(int fd);
int crashsim_open(const char *path, int flags, mode_t mode);
int crashsim_rename(const char *from, const char *to);
int crashsim_unlink(const char *path);
int crashsim_ftruncate(int fd, off_t len);

#endif
