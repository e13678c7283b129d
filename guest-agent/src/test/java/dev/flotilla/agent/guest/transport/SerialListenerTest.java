package dev.flotilla.agent.guest.transport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameCodec;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.PingRequest;
import dev.flotilla.agent.protocol.v1.Request;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The serial listener's sessions against a port that behaves as a virtio console port does: a
 * read blocks while a host is attached and has sent nothing, and returns no bytes at once while
 * none is.
 */
class SerialListenerTest {
  private static final FrameCodec CODEC = new FrameCodec(1 << 20);

  private final FakePort port = new FakePort();
  private final SerialListener listener = new SerialListener(Path.of("/dev/virtio-ports/test"), port, new ByteArrayOutputStream(), port).start();

  @AfterEach
  void close() throws IOException {
    listener.close();
  }

  private static byte[] handshake(String sandboxId) {
    return CODEC.encode(Frame.request(1, Request.newBuilder().setHandshake(HandshakeRequest.newBuilder().setSandboxId(sandboxId).setIncarnation(1)).build().toByteArray()));
  }

  private static byte[] ping(int stream) {
    return CODEC.encode(Frame.request(stream, Request.newBuilder().setPing(PingRequest.getDefaultInstance()).build().toByteArray()));
  }

  private AgentListener.Connection accept() throws Exception {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return listener.accept();
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }).get(5, TimeUnit.SECONDS);
  }

  /** The next frame of a session, or null at its end of file; fails after 5 s. */
  private static Frame next(AgentListener.Connection c) throws Exception {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return CODEC.read(c.in());
      } catch (java.io.EOFException end) {
        return null;
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }).get(5, TimeUnit.SECONDS);
  }

  @Test
  void aStaleDisconnectArrivingAfterTheNextHostsHandshakeDoesNotEndItsSession() throws Exception {
    // a clone: its host's handshake, then the template's host's disconnect, then this host's connect
    port.send(handshake("clone"));
    AgentListener.Connection c = accept();
    Frame first = next(c);
    assertEquals("clone", Request.parseFrom(first.payload()).getHandshake().getSandboxId());
    port.flicker(1);
    port.awaitZeroReads(1);
    // the agent answers the handshake in this session: the host is still there
    c.out().write(new byte[] {1, 2, 3});
    port.send(ping(3));
    Frame second = next(c);
    assertNotNull(second, "the session ended on one zero read");
    assertArrayEquals(ping(3), CODEC.encode(second));
  }

  @Test
  void aHostThatStaysAwayEndsItsSessionAndItsWritesAreRefused() throws Exception {
    port.send(handshake("sb"));
    AgentListener.Connection c = accept();
    next(c);
    long gone = System.nanoTime();
    port.leave();
    assertEquals(null, next(c), "end of file once the host is gone");
    assertTrue(System.nanoTime() - gone >= TimeUnit.MILLISECONDS.toNanos(SerialListener.HOST_GONE_AFTER_MILLIS), "not before the grace");
    IOException refused = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> c.out().write(1));
    assertTrue(refused.getMessage().contains("disconnected"), refused.getMessage());
    // the next host starts a session of its own with its handshake
    port.come();
    port.send(handshake("sb"));
    AgentListener.Connection again = accept();
    assertEquals("sb", Request.parseFrom(next(again).payload()).getHandshake().getSandboxId());
  }

  /**
   * A virtio console port: reads block while a host is attached with nothing sent, and return no
   * bytes at once while none is; {@link #flicker} makes the next reads find no host, as a stale
   * disconnect followed by a connect does.
   */
  static final class FakePort extends InputStream {
    private final LinkedBlockingQueue<byte[]> data = new LinkedBlockingQueue<>();
    private final AtomicInteger flickers = new AtomicInteger();
    private final AtomicInteger zeroReads = new AtomicInteger();
    private volatile boolean away;
    private volatile boolean closed;

    void send(byte[] b) {
      data.add(b);
    }

    void flicker(int reads) {
      flickers.addAndGet(reads);
    }

    void leave() {
      away = true;
    }

    void come() {
      away = false;
    }

    void awaitZeroReads(int n) {
      org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(5)).until(() -> zeroReads.get() >= n);
    }

    @Override
    public int read() {
      throw new UnsupportedOperationException();
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      while (!closed) {
        if (away || flickers.getAndUpdate(f -> Math.max(0, f - 1)) > 0) {
          zeroReads.incrementAndGet();
          return 0;
        }
        try {
          byte[] chunk = data.poll(10, TimeUnit.MILLISECONDS);
          if (chunk == null) continue;
          System.arraycopy(chunk, 0, b, off, chunk.length);
          return chunk.length;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new java.io.InterruptedIOException();
        }
      }
      throw new IOException("closed");
    }

    @Override
    public void close() {
      closed = true;
    }
  }
}
