package dev.flotilla.agent.guest.process;

import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.protocol.v1.Error;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A pseudo-terminal for an interactive exec: the master stays in the agent (its output is the
 * process's stdout channel, stdin writes go into it), the slave becomes the process's stdin,
 * stdout, stderr and controlling terminal.
 *
 * <p>The master is opened at {@code <dev>/ptmx} of the tenant's root, so the pty belongs to the
 * devpts instance the tenant's processes see (a microVM mounts one for the tenant's root beside
 * the initramfs's own; each devpts mount is its own instance). Its slave is found with TIOCGPTN
 * rather than ptsname(3), whose path would be the agent's view.
 *
 * <p>libc through JNA: the JDK has no pty. Every read, write and resize holds a use of the master
 * fd, and the fd is closed only when it is closed and no use is left, so no call ever reaches a
 * recycled descriptor; none blocks under the lock (a write to a process that does not read
 * blocks, and must not stall a resize or the close).
 */
public final class Pty implements AutoCloseable {

  /** The libc calls used; JNA binds them by name. */
  interface LibC extends Library {
    int open(String path, int flags);

    int ioctl(int fd, NativeLong request, int[] arg);

    int ioctl(int fd, NativeLong request, short[] arg);

    NativeLong read(int fd, byte[] buf, NativeLong count);

    NativeLong write(int fd, byte[] buf, NativeLong count);

    int close(int fd);
  }

  private static final int O_RDWR = 02;
  private static final int O_NOCTTY = 0400;
  private static final int O_CLOEXEC = 02000000;
  private static final long TIOCSWINSZ = 0x5414;
  private static final long TIOCGPTN = 0x80045430L;
  private static final long TIOCSPTLCK = 0x40045431L;
  private static final int EINTR = 4;
  private static final int EAGAIN = 11;
  /** The terminal size when the request names none. */
  static final int DEFAULT_ROWS = 24;
  static final int DEFAULT_COLS = 80;

  private static volatile LibC libc;

  private final int master;
  private final Path slave;
  private final Object lock = new Object();
  private boolean closed;
  private int uses;

  private Pty(int master, Path slave) {
    this.master = master;
    this.slave = slave;
  }

  private static LibC libc() {
    LibC l = libc;
    if (l == null) {
      synchronized (Pty.class) {
        if (libc == null) {
          try {
            libc = Native.load("c", LibC.class);
          } catch (LinkageError e) {
            throw new AgentError(Error.Code.UNIMPLEMENTED, "this agent cannot make terminals (JNA: " + e.getMessage() + ")");
          }
        }
        l = libc;
      }
    }
    return l;
  }

  /**
   * A new pty in the devpts of {@code dev} (the tenant's /dev as the agent sees it), unlocked and
   * sized {@code rows} x {@code cols} (0: 24 x 80).
   */
  public static Pty open(Path dev, int rows, int cols) {
    LibC c = libc();
    Path ptmx = dev.resolve("ptmx");
    if (!Files.exists(ptmx)) ptmx = dev.resolve("pts").resolve("ptmx");
    int fd = c.open(ptmx.toString(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      throw new AgentError(Error.Code.FAILED_PRECONDITION, "cannot open " + ptmx + " for a terminal: errno " + Native.getLastError());
    }
    try {
      int[] arg = {0};
      if (c.ioctl(fd, new NativeLong(TIOCSPTLCK), arg) != 0) throw failed("unlock", fd);
      if (c.ioctl(fd, new NativeLong(TIOCGPTN), arg) != 0) throw failed("number", fd);
      Pty pty = new Pty(fd, dev.resolve("pts").resolve(Integer.toString(arg[0])));
      pty.resize(rows, cols);
      return pty;
    } catch (RuntimeException e) {
      c.close(fd);
      throw e;
    }
  }

  private static AgentError failed(String what, int fd) {
    return new AgentError(Error.Code.INTERNAL, "cannot " + what + " the terminal (fd " + fd + "): errno " + Native.getLastError());
  }

  /** The slave's path in the agent's view: what the process gets as stdin, stdout and stderr. */
  public Path slave() {
    return slave;
  }

  /** Sets the window size; the kernel sends SIGWINCH to the terminal's foreground process group. */
  public void resize(int rows, int cols) {
    if (rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff) throw AgentError.invalid("rows and cols must be 0-65535");
    short[] ws = {(short) (rows == 0 ? DEFAULT_ROWS : rows), (short) (cols == 0 ? DEFAULT_COLS : cols), 0, 0};
    if (!acquire()) throw AgentError.precondition("the terminal is closed (its process has ended)");
    try {
      if (libc().ioctl(master, new NativeLong(TIOCSWINSZ), ws) != 0) throw failed("resize", master);
    } finally {
      release();
    }
  }

  private boolean acquire() {
    synchronized (lock) {
      if (closed) return false;
      uses++;
      return true;
    }
  }

  private void release() {
    synchronized (lock) {
      if (--uses == 0 && closed) libc().close(master);
    }
  }

  /** The process's output: ends when every holder of the slave has closed it (EIO on Linux). Closing it closes the pty. */
  public InputStream output() {
    return new InputStream() {
      @Override
      public int read() throws IOException {
        byte[] one = new byte[1];
        return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
      }

      @Override
      public int read(byte[] b, int off, int len) throws IOException {
        if (len == 0) return 0;
        byte[] buf = off == 0 ? b : new byte[len];
        while (true) {
          if (!acquire()) return -1;
          long n;
          int errno;
          try {
            n = libc().read(master, buf, new NativeLong(len)).longValue();
            errno = n < 0 ? Native.getLastError() : 0;
          } finally {
            release();
          }
          if (n > 0) {
            if (buf != b) System.arraycopy(buf, 0, b, off, (int) n);
            return (int) n;
          }
          if (n == 0) return -1;
          if (errno == EINTR || errno == EAGAIN) continue;
          return -1; // EIO: the slave side is closed by all; the end of the output
        }
      }

      @Override
      public void close() {
        Pty.this.close();
      }
    };
  }

  /** What the host writes to stdin: into the master, through the line discipline (0x03 is SIGINT when ISIG is on). */
  public OutputStream input() {
    return new OutputStream() {
      @Override
      public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
      }

      @Override
      public void write(byte[] b, int off, int len) throws IOException {
        byte[] rest = off == 0 && len == b.length ? b : java.util.Arrays.copyOfRange(b, off, off + len);
        while (rest.length > 0) {
          if (!acquire()) throw new IOException("the terminal is closed");
          long n;
          int errno;
          try {
            n = libc().write(master, rest, new NativeLong(rest.length)).longValue();
            errno = n < 0 ? Native.getLastError() : 0;
          } finally {
            release();
          }
          if (n < 0) {
            if (errno == EINTR) continue;
            throw new IOException("write to the terminal failed: errno " + errno);
          }
          rest = java.util.Arrays.copyOfRange(rest, (int) n, rest.length);
        }
      }

      @Override
      public void close() {
        // Stdin of a terminal is not closed by closing the master (that would hang up the
        // session): GuestProcess sends EOF (^D) instead.
      }
    };
  }

  /** Closes the master once no call uses it any more. */
  @Override
  public void close() {
    synchronized (lock) {
      if (closed) return;
      closed = true;
      if (uses == 0) libc().close(master);
    }
  }
}
