package dev.flotilla.agent.guest.process;

import com.google.protobuf.ByteString;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.v1.OutputChunk;
import dev.flotilla.agent.protocol.v1.ReadOutputResponse;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The output of a detached process: both channels, in the order they came, in a ring of at most
 * {@code capacity} bytes (the oldest chunks go first). Offsets count every byte since the first,
 * so a reader that resumes after a gap learns how much it missed. Fed by the process's
 * {@link OutputPump}s, which it never blocks: the process never waits for a reader.
 */
public final class OutputRing implements OutputTarget {

  private record Chunk(long offset, boolean stderr, byte[] data) {
    long end() {
      return offset + data.length;
    }
  }

  private record Waiter(long offset, int maxBytes, CompletableFuture<ReadOutputResponse> answer) {}

  private final int capacity;
  private final ArrayDeque<Chunk> chunks = new ArrayDeque<>();
  private final List<Waiter> waiters = new ArrayList<>();
  private long start;
  private long end;
  private int size;
  private int openChannels = 2;

  public OutputRing(int capacity) {
    if (capacity < 1) throw new IllegalArgumentException("capacity must be positive");
    this.capacity = capacity;
  }

  /** The offset past the last byte written so far. */
  public synchronized long end() {
    return end;
  }

  /** From a pump: a chunk of one channel, or its end. Never refuses. */
  @Override
  public boolean send(Frame frame) {
    List<Waiter> ready;
    synchronized (this) {
      byte[] data = frame.payload();
      if (data.length > 0) append(frame.stderr(), data);
      if (frame.endOfStream()) openChannels = Math.max(0, openChannels - 1);
      ready = new ArrayList<>(waiters);
      waiters.clear();
    }
    for (Waiter w : ready) w.answer().complete(read(w.offset(), w.maxBytes()));
    return true;
  }

  private void append(boolean stderr, byte[] data) {
    long at = end;
    end += data.length;
    if (data.length > capacity) {
      // Only the newest bytes fit: offsets still count every byte.
      at = end - capacity;
      data = java.util.Arrays.copyOfRange(data, data.length - capacity, data.length);
      chunks.clear();
      size = 0;
    }
    chunks.addLast(new Chunk(at, stderr, data));
    size += data.length;
    while (size > capacity) {
      size -= chunks.removeFirst().data().length;
    }
    start = chunks.peekFirst().offset();
  }

  /** Output from {@code offset} (or the oldest still kept), at most {@code maxBytes}. */
  public synchronized ReadOutputResponse read(long offset, int maxBytes) {
    long from = Math.max(offset, start);
    ReadOutputResponse.Builder r = ReadOutputResponse.newBuilder().setOffset(Math.min(from, end));
    int budget = Math.max(1, maxBytes);
    long pos = from;
    for (Iterator<Chunk> it = chunks.iterator(); it.hasNext() && budget > 0; ) {
      Chunk c = it.next();
      if (c.end() <= pos) continue;
      int skip = (int) (pos - c.offset());
      int n = Math.min(c.data().length - skip, budget);
      r.addChunks(OutputChunk.newBuilder().setStderr(c.stderr()).setData(ByteString.copyFrom(c.data(), skip, n)));
      pos += n;
      budget -= n;
    }
    r.setEof(openChannels == 0 && pos >= end);
    return r.build();
  }

  /**
   * Like {@link #read}, but when there is nothing at {@code offset} yet and the output goes on,
   * waits up to {@code wait} for some.
   */
  public CompletableFuture<ReadOutputResponse> read(long offset, int maxBytes, Duration wait, ScheduledExecutorService timer) {
    Waiter w;
    synchronized (this) {
      if (wait.isZero() || openChannels == 0 || end > Math.max(offset, start)) {
        return CompletableFuture.completedFuture(read(offset, maxBytes));
      }
      w = new Waiter(offset, maxBytes, new CompletableFuture<>());
      waiters.add(w);
    }
    timer.schedule(() -> {
      boolean mine;
      synchronized (this) {
        mine = waiters.remove(w);
      }
      if (mine) w.answer().complete(read(w.offset(), w.maxBytes()));
    }, wait.toMillis(), TimeUnit.MILLISECONDS);
    return w.answer();
  }
}
