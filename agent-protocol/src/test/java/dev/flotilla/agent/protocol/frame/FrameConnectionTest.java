package dev.flotilla.agent.protocol.frame;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** FrameConnections over in-memory pipes ({@link MemoryPipe}): normal traffic, and a hostile peer writing raw bytes. */
class FrameConnectionTest {

  private static final Duration TIMEOUT = Duration.ofSeconds(10);
  private final List<AutoCloseable> toClose = new ArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : toClose) c.close();
  }

  /** A connection under test whose peer is raw bytes: {@code toConn} feeds it, {@code fromConn} shows what it sent. */
  private record Raw(FrameConnection conn, OutputStream toConn, InputStream fromConn, BlockingQueue<Frame> received) {}

  private Raw raw(String name) throws IOException {
    MemoryPipe in = new MemoryPipe(1 << 16);
    MemoryPipe out = new MemoryPipe(1 << 16);
    OutputStream toConn = in.output();
    InputStream fromConn = out.input();
    FrameConnection conn = new FrameConnection(in.input(), out.output(), name, 1024);
    BlockingQueue<Frame> received = new LinkedBlockingQueue<>();
    conn.start(received::add);
    toClose.add(conn);
    toClose.add(toConn);
    toClose.add(fromConn);
    return new Raw(conn, toConn, fromConn, received);
  }

  private FrameConnection[] pair(FrameConnection.Handler a, FrameConnection.Handler b) throws IOException {
    MemoryPipe toA = new MemoryPipe(1 << 16);
    MemoryPipe toB = new MemoryPipe(1 << 16);
    FrameConnection ca = new FrameConnection(toA.input(), toB.output(), "a", 1024);
    FrameConnection cb = new FrameConnection(toB.input(), toA.output(), "b", 1024);
    toClose.add(ca);
    toClose.add(cb);
    ca.start(a);
    cb.start(b);
    return new FrameConnection[] {ca, cb};
  }

  /**
   * A handler that fails while no thread can be made for the close guard (a sandbox out of pids):
   * the connection still closes at once, so its peer sees EOF instead of a connection with no
   * reader that never answers again.
   */
  @Test
  void aConnectionClosesEvenWhenItsCloseGuardGetsNoThread() throws Exception {
    MemoryPipe in = new MemoryPipe(1 << 16);
    MemoryPipe out = new MemoryPipe(1 << 16);
    java.util.concurrent.ScheduledExecutorService noThreads = new java.util.concurrent.ScheduledThreadPoolExecutor(1) {
      @Override
      public java.util.concurrent.ScheduledFuture<?> schedule(Runnable command, long delay, TimeUnit unit) {
        throw new OutOfMemoryError("unable to create native thread: possibly out of memory or process/resource limits reached");
      }
    };
    FrameConnection conn = new FrameConnection(in.input(), out.output(), "starved", 1024, noThreads);
    toClose.add(conn);
    conn.start(f -> {
      throw new OutOfMemoryError("unable to create native thread");
    });
    OutputStream toConn = in.output();
    InputStream fromConn = out.input();
    toClose.add(toConn);
    toClose.add(fromConn);
    toConn.write(new FrameCodec(1024).encode(Frame.request(1, new byte[] {1})));
    toConn.flush();
    Throwable cause = conn.closed().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    assertInstanceOf(OutOfMemoryError.class, cause);
    assertTimeoutPreemptively(TIMEOUT, () -> assertEquals(-1, fromConn.read(), "the peer sees the close"));
    noThreads.shutdownNow();
  }

  static Stream<Arguments> hostileInputs() {
    byte[] random = new byte[300];
    new Random(3).nextBytes(random);
    random[0] = 0x7f; // make the first length oversized: deterministic
    return Stream.of(
        Arguments.of("oversized", ByteBuffer.allocate(10).putInt(4096).putInt(1).put((byte) 1).put((byte) 0).array(),
            "exceeds the limit of 1024"),
        Arguments.of("unknown type", ByteBuffer.allocate(10).putInt(0).putInt(1).put((byte) 42).put((byte) 0).array(),
            "unknown frame type 42"),
        Arguments.of("truncated", ByteBuffer.allocate(13).putInt(20).putInt(1).put((byte) 1).put((byte) 0).put(new byte[3]).array(),
            "truncated REQUEST frame"),
        Arguments.of("random", random, "exceeds the limit"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("hostileInputs")
  void hostileInputEndsTheConnectionWithGoAway(String name, byte[] bytes, String reason) throws Exception {
    Raw r = raw(name);
    assertTimeoutPreemptively(TIMEOUT, () -> {
      r.toConn().write(bytes);
      r.toConn().close(); // end of input: a truncated frame becomes visible
      Throwable cause = r.conn().closed().get();
      assertInstanceOf(ProtocolException.class, cause);
      assertTrue(cause.getMessage().contains(reason), cause.getMessage());
      // the peer sees a GOAWAY with the reason, then the end of the stream
      byte[] sent = readAll(r.fromConn());
      Frame goAway = new FrameCodec(1024).read(new java.io.ByteArrayInputStream(sent));
      assertEquals(FrameType.GOAWAY, goAway.type());
      assertEquals(cause.getMessage(), goAway.reason());
    });
    assertFalse(r.conn().isOpen());
    assertTrue(r.received().isEmpty());
    awaitNoReaderThread(name);
  }

  @Test
  void framesFlowBothWaysAndDataKeepsItsOrder() throws Exception {
    BlockingQueue<Frame> atA = new LinkedBlockingQueue<>();
    FrameConnection[] ab = new FrameConnection[2];
    FrameConnection[] c = pair(atA::add, f -> {
      if (f.type() == FrameType.REQUEST) {
        for (int i = 0; i < 100; i++) ab[1].trySend(Frame.data(f.streamId(), false, new byte[] {(byte) i}, i == 99));
        ab[1].trySend(Frame.response(f.streamId(), f.payload()));
      }
    });
    ab[0] = c[0];
    ab[1] = c[1];
    c[0].send(Frame.request(9, "ping".getBytes()));
    for (int i = 0; i < 100; i++) {
      Frame d = atA.poll(10, TimeUnit.SECONDS);
      assertEquals(FrameType.DATA, d.type());
      assertArrayEquals(new byte[] {(byte) i}, d.payload());
      assertEquals(i == 99, d.endOfStream());
    }
    Frame r = atA.poll(10, TimeUnit.SECONDS);
    assertEquals(FrameType.RESPONSE, r.type());
    assertArrayEquals("ping".getBytes(), r.payload());
  }

  @Test
  void aHandlerProtocolErrorReachesThePeerAsGoAway() throws Exception {
    FrameConnection[] c = pair(f -> {}, f -> {
      throw new ProtocolException("no DATA expected here");
    });
    c[0].send(Frame.data(1, false, new byte[1], false));
    Throwable atPeer = c[0].closed().get(10, TimeUnit.SECONDS);
    assertInstanceOf(FrameConnection.GoAwayException.class, atPeer);
    assertEquals("peer sent GOAWAY: no DATA expected here", atPeer.getMessage());
    assertInstanceOf(ProtocolException.class, c[1].closed().get(10, TimeUnit.SECONDS));
    assertThrows(IOException.class, () -> c[0].send(Frame.request(1, new byte[0])));
    awaitNoReaderThread("a");
    awaitNoReaderThread("b");
  }

  @Test
  void aFailingHandlerClosesTheConnectionWithoutKillingTheProcess() throws Exception {
    FrameConnection[] c = pair(f -> {}, f -> {
      throw new IllegalStateException("bug");
    });
    c[0].send(Frame.request(1, new byte[0]));
    Throwable atPeer = c[0].closed().get(10, TimeUnit.SECONDS);
    assertTrue(atPeer.getMessage().contains("internal error"), atPeer.getMessage());
  }

  @Test
  void localCloseIsCleanOnBothSides() throws Exception {
    FrameConnection[] c = pair(f -> {}, f -> {});
    c[0].close();
    assertNull(c[0].closed().get(10, TimeUnit.SECONDS));
    assertNull(c[1].closed().get(10, TimeUnit.SECONDS), "EOF is a clean end");
    assertFalse(c[0].trySend(Frame.request(1, new byte[0])));
    awaitNoReaderThread("a");
    awaitNoReaderThread("b");
  }

  @Test
  void goAwayFromThePeerClosesWithItsReason() throws Exception {
    FrameConnection[] c = pair(f -> {}, f -> {});
    c[1].goAway("shutting down");
    Throwable cause = c[0].closed().get(10, TimeUnit.SECONDS);
    assertEquals("peer sent GOAWAY: shutting down", cause.getMessage());
  }

  private static byte[] readAll(InputStream in) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    byte[] buf = new byte[1024];
    try {
      int n;
      while ((n = in.read(buf)) >= 0) out.write(buf, 0, n);
    } catch (IOException e) {
      // a closed pipe ends the read like EOF
    }
    return out.toByteArray();
  }

  private static void awaitNoReaderThread(String description) {
    await("reader thread of " + description + " ends").atMost(TIMEOUT).until(() -> Thread.getAllStackTraces().keySet()
        .stream().noneMatch(t -> t.getName().startsWith("frame-reader-") && t.getName().endsWith("-" + description)));
  }
}
