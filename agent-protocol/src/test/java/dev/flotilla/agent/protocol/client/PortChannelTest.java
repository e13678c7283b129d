package dev.flotilla.agent.protocol.client;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import dev.flotilla.agent.protocol.v1.OpenPortResponse;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * A forwarded port's host end against a hostile agent: whatever credit the agent grants, the host
 * keeps no more than {@link PortChannel#MAX_UNACKED} unacknowledged; an agent that sends past the
 * window the host granted loses its connection; an agent that only reads gets a half-close.
 */
class PortChannelTest {
  private static final Duration DEADLINE = Duration.ofSeconds(10);
  private final List<AutoCloseable> toClose = new ArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : toClose) c.close();
  }

  /** An agent that answers every OpenPort with {@code window} credit and counts the DATA it gets, granting nothing more. */
  private final class GreedyAgent {
    final FrameConnection conn;
    final AtomicLong received = new AtomicLong();
    final CompletableFuture<Integer> opened = new CompletableFuture<>();
    final CompletableFuture<Void> halfClosed = new CompletableFuture<>();

    GreedyAgent(MemoryPipe toAgent, MemoryPipe toHost, int window) {
      this(toAgent, toHost, window, 0);
    }

    /** @param slowMillis how long the agent dawdles over each DATA frame (its own loop, not the test's wait) */
    GreedyAgent(MemoryPipe toAgent, MemoryPipe toHost, int window, int slowMillis) {
      conn = new FrameConnection(toAgent.input(), toHost.output(), "greedy-agent", 1 << 20);
      conn.start(f -> {
        if (f.type() == FrameType.REQUEST) {
          try {
            Request r = Request.parseFrom(f.payload());
            Response answer = r.hasOpenPort()
                ? Response.newBuilder().setOpenPort(OpenPortResponse.newBuilder().setWindow(window).setAddress("127.0.0.1:1")).build()
                : Response.newBuilder().setHandshake(dev.flotilla.agent.protocol.v1.GuestDetails.getDefaultInstance()).build();
            conn.trySend(Frame.response(f.streamId(), answer.toByteArray()));
            if (r.hasOpenPort()) opened.complete(f.streamId());
          } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            throw new IllegalStateException(e);
          }
        } else if (f.type() == FrameType.DATA) {
          if (slowMillis > 0) java.util.concurrent.locks.LockSupport.parkNanos(slowMillis * 1_000_000L);
          received.addAndGet(f.payload().length);
          if (f.endOfStream()) halfClosed.complete(null);
        }
      });
      toClose.add(conn);
    }
  }

  private FramedAgentClient client(MemoryPipe toAgent, MemoryPipe toHost) {
    FramedAgentClient c = new FramedAgentClient(toHost.input(), toAgent.output(), "host", ClientOptions.defaults());
    toClose.add(c);
    return c;
  }

  /** Takes everything, releases nothing: the agent's window is all it may send. */
  static final class Hoarder implements PortSink {
    final AtomicLong got = new AtomicLong();
    final CompletableFuture<Throwable> error = new CompletableFuture<>();

    @Override
    public void onData(byte[] data, Runnable release) {
      got.addAndGet(data.length);
    }

    @Override
    public void onEnd() {}

    @Override
    public void onError(Throwable e) {
      error.complete(e);
    }
  }

  @Test
  void anAgentThatGrantsHugeCreditAndNeverAcknowledgesGetsNoMoreThanTheBound() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(4 << 20);
    MemoryPipe toHost = new MemoryPipe(1 << 20);
    GreedyAgent agent = new GreedyAgent(toAgent, toHost, Integer.MAX_VALUE);
    FramedAgentClient c = client(toAgent, toHost);
    PortStream port = c.openPort(8080, new Hoarder(), DEADLINE).get(10, TimeUnit.SECONDS);
    CompletableFuture<Void> big = port.write(new byte[16 << 20]);
    await().atMost(DEADLINE).until(() -> agent.received.get() == PortChannel.MAX_UNACKED);
    assertFalse(big.isDone(), "the rest of the write waits for the agent's acknowledgement");
    // An acknowledgement lets exactly that much more through.
    agent.conn.trySend(Frame.windowUpdate(agent.opened.get(), false, 1000));
    await().atMost(DEADLINE).until(() -> agent.received.get() == PortChannel.MAX_UNACKED + 1000);
    assertTrue(c.isOpen());
    port.abort("done");
  }

  @Test
  void anAgentThatOverrunsTheHostsWindowLosesItsConnection() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(4 << 20);
    GreedyAgent agent = new GreedyAgent(toAgent, toHost, 0);
    FramedAgentClient c = client(toAgent, toHost);
    Hoarder sink = new Hoarder();
    c.openPort(8080, sink, DEADLINE).get(10, TimeUnit.SECONDS);
    int stream = agent.opened.get();
    byte[] chunk = new byte[32 * 1024];
    for (int sent = 0; sent <= PortChannel.WINDOW; sent += chunk.length) {
      if (!agent.conn.trySend(Frame.data(stream, false, chunk, false))) break;
    }
    await().atMost(DEADLINE).until(() -> !c.isOpen());
    assertInstanceOf(ProtocolException.class, c.closeCause());
    assertTrue(c.closeCause().getMessage().contains("overran the flow-control window"), c.closeCause().getMessage());
    assertTrue(sink.got.get() <= PortChannel.WINDOW, "the host took no more than its window: " + sink.got.get());
    assertInstanceOf(AgentException.class, sink.error.get(10, TimeUnit.SECONDS));
  }

  @Test
  void anAgentThatSendsAnOversizedChunkLosesItsConnection() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(4 << 20);
    GreedyAgent agent = new GreedyAgent(toAgent, toHost, 0);
    FramedAgentClient c = client(toAgent, toHost);
    Hoarder sink = new Hoarder();
    c.openPort(8080, sink, DEADLINE).get(10, TimeUnit.SECONDS);
    agent.conn.trySend(Frame.data(agent.opened.get(), false, new byte[PortChannel.CHUNK + 1], false));
    await().atMost(DEADLINE).until(() -> !c.isOpen());
    assertInstanceOf(ProtocolException.class, c.closeCause());
    assertEquals(0, sink.got.get());
  }

  @Test
  void manyPortsSendingAtOnceToASlowButHonestAgentDoNotOverflowTheConnection() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(64 * 1024);
    MemoryPipe toHost = new MemoryPipe(1 << 20);
    GreedyAgent agent = new GreedyAgent(toAgent, toHost, PortChannel.MAX_UNACKED, 1);
    FramedAgentClient c = client(toAgent, toHost);
    int ports = 12;
    List<PortStream> open = new ArrayList<>();
    for (int i = 0; i < ports; i++) open.add(c.openPort(8080, new Hoarder(), DEADLINE).get(10, TimeUnit.SECONDS));
    for (PortStream p : open) p.write(new byte[1 << 20]);
    // Each port may send its credit; together that is more than the connection queues, which
    // would cost the guest its connection were they all queued at once.
    await().atMost(Duration.ofSeconds(30)).until(() -> agent.received.get() == (long) ports * PortChannel.MAX_UNACKED);
    assertTrue(c.isOpen(), "closed: " + c.closeCause());
  }

  @Test
  void closeWriteSendsTheRestThenTheEnd() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(1 << 20);
    GreedyAgent agent = new GreedyAgent(toAgent, toHost, 1 << 20);
    FramedAgentClient c = client(toAgent, toHost);
    PortStream port = c.openPort(8080, new Hoarder(), DEADLINE).get(10, TimeUnit.SECONDS);
    port.write(new byte[100_000]);
    port.closeWrite();
    agent.halfClosed.get(10, TimeUnit.SECONDS);
    assertEquals(100_000, agent.received.get());
  }
}
