package dev.flotilla.agent.protocol.frame;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.channels.Pipe;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** A sender on the node never blocks on a peer that does not read: the peer loses its connection instead. */
class QueuedWritesTest {

  /** A connection whose peer never reads what it is sent (and never sends anything). */
  static FrameConnection toADeafPeer(long maxPending, Duration stall) throws IOException {
    Pipe toPeer = Pipe.open();      // nobody reads its source: writes block once the pipe's buffer is full
    Pipe fromPeer = Pipe.open();    // the peer never writes
    InputStream in = Channels.newInputStream(fromPeer.source());
    OutputStream out = Channels.newOutputStream(toPeer.sink());
    FrameConnection c = new FrameConnection(in, out, "deaf peer", 64 * 1024).queueWrites(maxPending, stall);
    c.start(f -> { });
    return c;
  }

  @Test
  void aPeerThatLetsTheQueueOverflowLosesTheConnectionAndNoSendEverWaits() throws Exception {
    FrameConnection c = toADeafPeer(4 * (Frame.HEADER_SIZE + 64 * 1024), Duration.ofMinutes(1));
    byte[] chunk = new byte[60 * 1024];
    long slowest = 0;
    IOException refused = null;
    for (int i = 0; i < 100 && refused == null; i++) {
      long t0 = System.nanoTime();
      try {
        c.send(Frame.data(1, false, chunk, false));
      } catch (IOException e) {
        refused = e;
      }
      slowest = Math.max(slowest, System.nanoTime() - t0);
    }
    assertInstanceOf(FrameConnection.PeerNotReadingException.class, refused, "the queue's bound was reached");
    assertTrue(TimeUnit.NANOSECONDS.toMillis(slowest) < 1000, "a send took " + TimeUnit.NANOSECONDS.toMillis(slowest) + " ms");
    Throwable cause = c.closed().get(10, TimeUnit.SECONDS);
    assertInstanceOf(FrameConnection.PeerNotReadingException.class, cause);
    assertFalse(c.isOpen());
    assertEquals(0, c.pendingBytes(), "what was queued is dropped with the connection");
    assertThrows(IOException.class, () -> c.send(Frame.data(1, false, chunk, false)));
  }

  @Test
  void aWriteThePeerDoesNotTakeWithinTheStallTimeoutEndsTheConnection() throws Exception {
    // Room for everything, but the pipe (64 KiB) fills and the writer stalls on it.
    FrameConnection c = toADeafPeer(64L << 20, Duration.ofMillis(300));
    byte[] chunk = new byte[60 * 1024];
    for (int i = 0; i < 4; i++) c.send(Frame.data(1, false, chunk, false));
    Throwable cause = c.closed().get(10, TimeUnit.SECONDS);
    assertInstanceOf(FrameConnection.PeerNotReadingException.class, cause);
    assertTrue(cause.getMessage().contains("has not accepted a write"), cause.getMessage());
  }

  @Test
  void aPeerThatReadsGetsEverythingInOrder() throws Exception {
    Pipe a = Pipe.open();
    Pipe b = Pipe.open();
    java.util.List<Frame> got = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
    FrameConnection sender = new FrameConnection(Channels.newInputStream(b.source()), Channels.newOutputStream(a.sink()), "sender", 64 * 1024)
        .queueWrites(4 * (Frame.HEADER_SIZE + 64 * 1024), Duration.ofSeconds(5));
    FrameConnection receiver = new FrameConnection(Channels.newInputStream(a.source()), Channels.newOutputStream(b.sink()), "receiver", 64 * 1024);
    sender.start(f -> { });
    receiver.start(got::add);
    for (int i = 0; i < 200; i++) {
      sender.send(Frame.data(i + 1, false, new byte[] {(byte) i}, false));
    }
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> got.size() == 200);
    for (int i = 0; i < 200; i++) assertEquals(i + 1, got.get(i).streamId());
    sender.close();
    receiver.close();
  }
}
