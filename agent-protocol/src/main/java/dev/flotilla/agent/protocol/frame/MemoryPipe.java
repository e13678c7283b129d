package dev.flotilla.agent.protocol.frame;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A bounded in-memory byte pipe for wiring a host and an agent together in one JVM (tests, an
 * in-process agent). Unlike {@code java.io.PipedInputStream} it does not fail when the last thread
 * that wrote has ended, which thread pools and short-lived writer threads would trip over.
 *
 * <p>Closing the output ends the input after the buffered bytes (EOF); closing the input makes
 * writes fail and wakes a blocked reader with EOF.
 */
public final class MemoryPipe {

  private final byte[] buffer;
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition notEmpty = lock.newCondition();
  private final Condition notFull = lock.newCondition();
  private int head;
  private int count;
  private boolean writerClosed;
  private boolean readerClosed;
  private final InputStream input = new In();
  private final OutputStream output = new Out();

  public MemoryPipe(int capacity) {
    if (capacity <= 0) throw new IllegalArgumentException("capacity must be positive");
    this.buffer = new byte[capacity];
  }

  public InputStream input() {
    return input;
  }

  public OutputStream output() {
    return output;
  }

  private final class In extends InputStream {
    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      return read(one, 0, 1) < 0 ? -1 : one[0] & 0xFF;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) return 0;
      lock.lock();
      try {
        while (count == 0) {
          if (writerClosed || readerClosed) return -1;
          notEmpty.await();
        }
        int n = Math.min(len, count);
        for (int i = 0; i < n; i++) b[off + i] = buffer[(head + i) % buffer.length];
        head = (head + n) % buffer.length;
        count -= n;
        notFull.signalAll();
        return n;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while reading the pipe");
      } finally {
        lock.unlock();
      }
    }

    @Override
    public void close() {
      lock.lock();
      try {
        readerClosed = true;
        count = 0;
        notEmpty.signalAll();
        notFull.signalAll();
      } finally {
        lock.unlock();
      }
    }
  }

  private final class Out extends OutputStream {
    @Override
    public void write(int b) throws IOException {
      write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      lock.lock();
      try {
        int written = 0;
        while (written < len) {
          if (writerClosed) throw new IOException("pipe closed by its writer");
          if (readerClosed) throw new IOException("pipe closed by its reader");
          if (count == buffer.length) {
            notFull.await();
            continue;
          }
          int tail = (head + count) % buffer.length;
          int n = Math.min(len - written, Math.min(buffer.length - count, buffer.length - tail));
          System.arraycopy(b, off + written, buffer, tail, n);
          count += n;
          written += n;
          notEmpty.signalAll();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while writing the pipe");
      } finally {
        lock.unlock();
      }
    }

    @Override
    public void close() {
      lock.lock();
      try {
        writerClosed = true;
        notEmpty.signalAll();
        notFull.signalAll();
      } finally {
        lock.unlock();
      }
    }
  }
}
