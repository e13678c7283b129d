package dev.flotilla.agent.guest.rebirth;

import com.sun.jna.Library;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * {@link CloneSystem} through libc (JNA, as for the agent's terminals): the JDK can neither feed
 * the kernel's entropy pool, nor set the clock, nor set the hostname. Needs CAP_SYS_ADMIN (the
 * guest agent is root in its VM); x86-64 and arm64 Linux (64-bit {@code time_t} and {@code long}).
 */
public final class LinuxCloneSystem implements CloneSystem {

  /** The libc calls used; JNA binds them by name. */
  interface LibC extends Library {
    int open(String path, int flags);

    int ioctl(int fd, NativeLong request, Pointer arg);

    int close(int fd);

    int clock_settime(int clockId, long[] timespec);

    int sethostname(byte[] name, NativeLong len);
  }

  /** _IOW('R', 0x03, int[2]): add entropy to the pool, crediting entropy_count bits (CAP_SYS_ADMIN). */
  static final long RNDADDENTROPY = 0x40085203L;
  /** _IO('R', 0x07): reseed the CRNG from the pool now (Linux 4.17 and later). */
  static final long RNDRESEEDCRNG = 0x5207L;
  private static final int O_RDWR = 02;
  private static final int O_CLOEXEC = 02000000;
  private static final int CLOCK_REALTIME = 0;
  private static final int EINVAL = 22;
  private static final int ENOTTY = 25;

  private static volatile LibC libc;

  private static LibC libc() throws CloneSystemException {
    LibC l = libc;
    if (l == null) {
      synchronized (LinuxCloneSystem.class) {
        if (libc == null) {
          try {
            libc = Native.load("c", LibC.class);
          } catch (LinkageError e) {
            throw new CloneSystemException("libc is not reachable through JNA: " + e.getMessage());
          }
        }
        l = libc;
      }
    }
    return l;
  }

  /**
   * Loads libc and makes each call once, with what changes nothing a clone could tell: fresh seed
   * for the template's own pool (every clone reseeds with its own anyway), the clock set to what
   * it reads, the hostname to what it is. JNA binds a function on its first call, and a clone
   * then pays only for the calls themselves.
   */
  @Override
  public void prepare() {
    try {
      libc();
      new Memory(8).clear();
      byte[] seed = new byte[32];
      new java.security.SecureRandom().nextBytes(seed);
      reseedKernelRng(seed);
      setWallClock(System.currentTimeMillis());
      String hostname = new String(java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/proc/sys/kernel/hostname")),
          StandardCharsets.US_ASCII).strip();
      if (!hostname.isEmpty()) setHostname(hostname);
    } catch (CloneSystemException | LinkageError | java.io.IOException e) {
      System.err.println("flotilla-guest-agent: cannot prepare for a rebirth: " + e.getMessage());
    }
  }

  @Override
  public void reseedKernelRng(byte[] seed) throws CloneSystemException {
    LibC c = libc();
    int fd = c.open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new CloneSystemException("cannot open /dev/urandom: errno " + Native.getLastError());
    try {
      // struct rand_pool_info { int entropy_count (bits); int buf_size (bytes); __u32 buf[]; }, native order
      Memory info = new Memory(8L + seed.length);
      ByteBuffer b = info.getByteBuffer(0, 8L + seed.length).order(ByteOrder.nativeOrder());
      b.putInt(seed.length * 8).putInt(seed.length).put(seed);
      if (c.ioctl(fd, new NativeLong(RNDADDENTROPY), info) != 0) {
        throw new CloneSystemException("RNDADDENTROPY on /dev/urandom failed: errno " + Native.getLastError()
            + " (the agent needs CAP_SYS_ADMIN)");
      }
      info.clear();
      if (c.ioctl(fd, new NativeLong(RNDRESEEDCRNG), Pointer.NULL) != 0) {
        int errno = Native.getLastError();
        if (errno != EINVAL && errno != ENOTTY) {
          throw new CloneSystemException("RNDRESEEDCRNG on /dev/urandom failed: errno " + errno);
        }
        // A kernel before 4.17: the credited entropy reseeds the CRNG at its next reseed only.
        System.err.println("flotilla-guest-agent: this kernel has no RNDRESEEDCRNG (errno " + errno
            + "): the seed is in the pool, the CRNG takes it at its next scheduled reseed");
      }
    } finally {
      c.close(fd);
    }
  }

  @Override
  public void setWallClock(long unixMillis) throws CloneSystemException {
    long[] timespec = {Math.floorDiv(unixMillis, 1000), Math.floorMod(unixMillis, 1000) * 1_000_000L};
    if (libc().clock_settime(CLOCK_REALTIME, timespec) != 0) {
      throw new CloneSystemException("clock_settime(CLOCK_REALTIME, " + unixMillis + " ms) failed: errno " + Native.getLastError());
    }
  }

  @Override
  public void setHostname(String hostname) throws CloneSystemException {
    byte[] name = hostname.getBytes(StandardCharsets.US_ASCII);
    if (libc().sethostname(name, new NativeLong(name.length)) != 0) {
      throw new CloneSystemException("sethostname(" + hostname + ") failed: errno " + Native.getLastError());
    }
  }
}
