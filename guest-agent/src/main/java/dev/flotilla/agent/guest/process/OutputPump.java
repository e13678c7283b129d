package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.protocol.frame.Frame;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;

/**
 * Moves one output channel of a process (stdout or stderr) to the host as DATA frames.
 *
 * <p>Reads the pipe only while the host has granted credit, never more than the credit: when the
 * host is slow the pipe fills and the process blocks in write(2), and the agent holds at most one
 * read buffer per channel. Once the connection that started the process is gone the pump
 * discards: it keeps reading so that the process never blocks on a pipe nobody will read.
 */
public final class OutputPump implements Runnable {

  private static final int READ_BUFFER = 32 * 1024;
  private static final byte[] EMPTY = new byte[0];

  private final InputStream pipe;
  private final int streamId;
  private final boolean stderr;
  private final OutputTarget target;
  private final int maxChunk;
  private final Object lock = new Object();
  private final CompletableFuture<Void> done = new CompletableFuture<>();
  private long credit;
  private boolean discard;

  public OutputPump(InputStream pipe, int streamId, boolean stderr, OutputTarget target, long initialCredit, int maxPayload) {
    this.pipe = pipe;
    this.streamId = streamId;
    this.stderr = stderr;
    this.target = target;
    this.credit = initialCredit;
    this.maxChunk = Math.min(READ_BUFFER, maxPayload);
  }

  /** Adds credit granted by a WINDOW_UPDATE. */
  public void grant(int increment) {
    synchronized (lock) {
      credit += increment;
      lock.notifyAll();
    }
  }

  /** The connection is gone: read and drop everything from now on. */
  public void discard() {
    synchronized (lock) {
      discard = true;
      lock.notifyAll();
    }
  }

  /** Completes when the pipe reached end of file (or broke). */
  public CompletableFuture<Void> done() {
    return done;
  }

  @Override
  public void run() {
    byte[] buf = new byte[maxChunk];
    try {
      while (true) {
        int allowed;
        synchronized (lock) {
          while (!discard && credit <= 0) lock.wait();
          allowed = discard ? buf.length : (int) Math.min(credit, buf.length);
        }
        int n = pipe.read(buf, 0, allowed);
        if (n < 0) break;
        synchronized (lock) {
          if (discard) continue;
          credit -= n;
        }
        if (!target.send(Frame.data(streamId, stderr, Arrays.copyOf(buf, n), false))) discard();
      }
    } catch (IOException e) {
      // The pipe broke (the process is gone): this is the end of the channel.
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      finish();
    }
  }

  /**
   * No thread could run this pump (the sandbox is out of pids or memory): the channel ends now, as
   * at end of file; what the process writes after this breaks its pipe.
   */
  public void abandon() {
    finish();
  }

  private void finish() {
    boolean send;
    synchronized (lock) {
      send = !discard;
    }
    if (send) target.send(Frame.data(streamId, stderr, EMPTY, true));
    try {
      pipe.close();
    } catch (IOException ignored) {
      // nothing to do
    }
    done.complete(null);
  }
}
