package dev.flotilla.agent.protocol.client;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.ExecProcessResponse;
import dev.flotilla.agent.protocol.v1.ReadFileResponse;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import dev.flotilla.agent.protocol.v1.WriteFileResponse;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The client against a scripted fake agent on the other end of a pipe. */
class FramedAgentClientTest {

  private static final Duration DEADLINE = Duration.ofSeconds(10);
  private final List<AutoCloseable> toClose = new ArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : toClose) c.close();
  }

  /** The agent end: requests go to {@code onRequest}, other frames to {@code frames}. */
  private final class FakeAgent {
    final FrameConnection conn;
    final BlockingQueue<Frame> frames = new LinkedBlockingQueue<>();
    final List<Request> requests = new CopyOnWriteArrayList<>();

    FakeAgent(InputStream in, OutputStream out, BiConsumer<Integer, Request> onRequest) {
      conn = new FrameConnection(in, out, "fake-agent", 1 << 20);
      conn.start(f -> {
        if (f.type() == FrameType.REQUEST) {
          try {
            Request r = Request.parseFrom(f.payload());
            requests.add(r);
            onRequest.accept(f.streamId(), r);
          } catch (IOException e) {
            throw new IllegalStateException(e);
          }
        } else {
          frames.add(f);
        }
      });
      toClose.add(conn);
    }

    void reply(int stream, Response r) {
      conn.trySend(Frame.response(stream, r.toByteArray()));
    }
  }

  private FakeAgent agent;

  private AgentClient client(ClientOptions options, BiConsumer<Integer, Request> onRequest) throws IOException {
    MemoryPipe toClient = new MemoryPipe(1 << 20);
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    agent = new FakeAgent(toAgent.input(), toClient.output(), onRequest);
    AgentClient c = AgentClients.over(toClient.input(), toAgent.output(), "test", options);
    toClose.add(c);
    return c;
  }

  private static AgentException failure(AgentException.Code code, CompletableFuture<?> f) {
    ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(20, TimeUnit.SECONDS));
    AgentException ae = assertInstanceOf(AgentException.class, e.getCause());
    assertEquals(code, ae.code(), ae::toString);
    return ae;
  }

  @Test
  void agentErrorsMapToTheirCodes() throws Exception {
    AgentClient c = client(ClientOptions.defaults(), (id, r) -> agent.reply(id, Response.newBuilder()
        .setError(Error.newBuilder().setCode(Error.Code.NOT_FOUND).setMessage("no process 'x'")).build()));
    AgentException e = failure(AgentException.Code.NOT_FOUND, c.waitProcess("x", DEADLINE));
    assertEquals("waitProcess x: no process 'x'", e.getMessage());
  }

  @Test
  void aMissedDeadlineFailsTheCallAndALateAnswerIsIgnored() throws Exception {
    List<Integer> unanswered = new CopyOnWriteArrayList<>();
    AgentClient c = client(ClientOptions.defaults(), (id, r) -> {
      if (r.hasPing() && r.getPing().getNonce() != 0 && unanswered.isEmpty()) {
        unanswered.add(id);
      } else {
        agent.reply(id, Response.newBuilder().setPing(dev.flotilla.agent.protocol.v1.PingResponse.newBuilder().setNonce(r.getPing().getNonce())).build());
      }
    });
    long start = System.nanoTime();
    AgentException e = failure(AgentException.Code.DEADLINE_EXCEEDED, c.ping(Duration.ofMillis(100)));
    assertTrue(System.nanoTime() - start < Duration.ofSeconds(5).toNanos());
    assertTrue(e.getMessage().contains("within PT0.1S"), e.getMessage());
    agent.reply(unanswered.get(0), Response.newBuilder().setPing(dev.flotilla.agent.protocol.v1.PingResponse.newBuilder().setNonce(agent.requests.get(0).getPing().getNonce())).build());
    assertTrue(c.ping(DEADLINE).get(10, TimeUnit.SECONDS).toNanos() > 0);
    assertTrue(c.isOpen());
  }

  @Test
  void aDroppedConnectionFailsPendingCallsAndOutput() throws Exception {
    CompletableFuture<Throwable> sinkError = new CompletableFuture<>();
    AgentClient c = client(ClientOptions.defaults(), (id, r) -> {
      if (r.hasExecProcess()) agent.reply(id, Response.newBuilder().setExecProcess(ExecProcessResponse.newBuilder().setPid(42)).build());
    });
    long pid = c.exec(ExecRequest.of("e", "x"), new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {}

      @Override
      public void onEnd(Channel channel) {}

      @Override
      public void onError(Throwable error) {
        sinkError.complete(error);
      }
    }, DEADLINE).get(10, TimeUnit.SECONDS);
    assertEquals(42, pid);
    CompletableFuture<ExitStatus> waiting = c.waitProcess("e", Duration.ofMinutes(5));
    await().until(() -> agent.requests.size() == 2);
    agent.conn.close();
    failure(AgentException.Code.CONNECTION_LOST, waiting);
    assertInstanceOf(AgentException.class, sinkError.get(10, TimeUnit.SECONDS));
    c.closed().get(10, TimeUnit.SECONDS);
    assertFalse(c.isOpen());
    failure(AgentException.Code.CONNECTION_LOST, c.ping(DEADLINE));
  }

  @Test
  void outputCreditIsReturnedAsTheSinkReleasesInCoalescedUpdates() throws Exception {
    int window = 4096;
    AgentClient c = client(ClientOptions.defaults().withOutputWindow(window), (id, r) -> {
      if (!r.hasExecProcess()) return;
      assertEquals(window, r.getExecProcess().getInitialWindow());
      agent.reply(id, Response.newBuilder().setExecProcess(ExecProcessResponse.newBuilder().setPid(1)).build());
      for (int i = 0; i < 16; i++) agent.conn.trySend(Frame.data(id, false, new byte[256], false));
    });
    BlockingQueue<Runnable> releases = new LinkedBlockingQueue<>();
    c.exec(ExecRequest.of("e", "x"), new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {
        releases.add(release);
      }

      @Override
      public void onEnd(Channel channel) {}
    }, DEADLINE).get(10, TimeUnit.SECONDS);
    await().until(() -> releases.size() == 16);
    for (int i = 0; i < 3; i++) releases.take().run();
    releases.peek().run();
    releases.take().run(); // a second call of the same release counts once
    Frame update = agent.frames.poll(10, TimeUnit.SECONDS);
    assertEquals(FrameType.WINDOW_UPDATE, update.type());
    assertEquals(1024, update.windowIncrement(), "one update per quarter window");
    assertFalse(update.stderr());
    for (int i = 0; i < 4; i++) releases.take().run();
    assertEquals(1024, agent.frames.poll(10, TimeUnit.SECONDS).windowIncrement());
    assertTrue(agent.frames.isEmpty());
  }

  @Test
  void anAgentThatOverrunsTheWindowIsCutOff() throws Exception {
    AgentClient c = client(ClientOptions.defaults().withOutputWindow(1024), (id, r) -> {
      agent.reply(id, Response.newBuilder().setExecProcess(ExecProcessResponse.newBuilder().setPid(1)).build());
      agent.conn.trySend(Frame.data(id, true, new byte[1025], false));
    });
    c.exec(ExecRequest.of("e", "x"), new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {}

      @Override
      public void onEnd(Channel channel) {}
    }, DEADLINE);
    c.closed().get(10, TimeUnit.SECONDS);
    Throwable atAgent = agent.conn.closed().get(10, TimeUnit.SECONDS);
    assertTrue(atAgent.getMessage().contains("overran the flow-control window of 1024 bytes on STDERR"), atAgent.getMessage());
  }

  @Test
  void filesOfAnySizeTravelInChunksUnderTheFrameLimit() throws Exception {
    ByteArrayOutputStream stored = new ByteArrayOutputStream();
    AgentClient c = client(new ClientOptions(1 << 20, 1 << 16, 100_000), (id, r) -> {
      if (r.hasWriteFile()) {
        var w = r.getWriteFile();
        assertEquals(stored.size(), w.getOffset());
        assertEquals(w.getOffset() == 0, w.getTruncate());
        assertTrue(w.getData().size() <= 100_000);
        stored.writeBytes(w.getData().toByteArray());
        agent.reply(id, Response.newBuilder().setWriteFile(WriteFileResponse.newBuilder().setSize(stored.size())).build());
      } else if (r.hasReadFile()) {
        var q = r.getReadFile();
        byte[] all = stored.toByteArray();
        int from = (int) q.getOffset();
        int to = Math.min(all.length, from + q.getLength());
        agent.reply(id, Response.newBuilder().setReadFile(ReadFileResponse.newBuilder()
            .setData(ByteString.copyFrom(all, from, to - from)).setEof(to == all.length).setSize(all.length)).build());
      }
    });
    byte[] data = new byte[1_234_567];
    new Random(5).nextBytes(data);
    assertEquals(data.length, c.writeFile("/f", new ByteArrayInputStream(data), 0644, DEADLINE).get(10, TimeUnit.SECONDS));
    assertEquals(13, agent.requests.size());
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    assertEquals(data.length, c.readFile("/f", out, DEADLINE).get(10, TimeUnit.SECONDS));
    assertArrayEquals(data, out.toByteArray());
    FileChunk chunk = c.readFileChunk("/f", 10, 5, DEADLINE).get(10, TimeUnit.SECONDS);
    assertArrayEquals(Arrays.copyOfRange(data, 10, 15), chunk.data());
  }

  /** The agent's answers to a handshake and to pings. */
  private void answerHandshakes(int id, Request r) {
    if (r.hasHandshake()) {
      agent.reply(id, Response.newBuilder().setHandshake(dev.flotilla.agent.protocol.v1.GuestDetails.newBuilder()
          .setKernel("test").setProtocolVersion(1)).build());
    } else if (r.hasPing()) {
      agent.reply(id, Response.newBuilder().setPing(dev.flotilla.agent.protocol.v1.PingResponse.newBuilder()
          .setNonce(r.getPing().getNonce())).build());
    }
  }

  private static byte[] pingAnswer() {
    return Response.newBuilder().setPing(dev.flotilla.agent.protocol.v1.PingResponse.newBuilder().setNonce(1)).build().toByteArray();
  }

  @Test
  void framesOfThePreviousHostOnASerialPortAreDroppedBeforeTheAgentsFirstAnswerAndEndTheConnectionAfterIt() throws Exception {
    AgentClient c = client(ClientOptions.defaults(), this::answerHandshakes);
    // given a serial port, which has no connection boundary: what the agent wrote for the previous
    // host's streams (an exec's output on stream 11, an answer on stream 7) reaches this host first
    agent.conn.trySend(Frame.data(11, false, "old output".getBytes(), false));
    agent.conn.trySend(Frame.response(7, pingAnswer()));
    agent.conn.trySend(Frame.data(1, false, "old output".getBytes(), true));
    agent.conn.trySend(Frame.goAway("malformed frame header (to the previous host)"));

    // when this host shakes hands, it gets its answer and the connection stays
    assertEquals("test", c.handshake("sb", 1, Duration.ofSeconds(30), DEADLINE).get(10, TimeUnit.SECONDS).kernel());
    assertTrue(c.isOpen(), () -> "closed: " + c.closeCause());
    assertTrue(c.ping(DEADLINE).get(10, TimeUnit.SECONDS).toNanos() > 0);

    // then, after the agent's first answer, a frame on a stream this client never opened is the
    // agent making things up: the connection goes
    agent.conn.trySend(Frame.data(11, false, "made up".getBytes(), false));
    await().atMost(DEADLINE).until(() -> !c.isOpen());
    assertTrue(String.valueOf(c.closeCause()).contains("DATA on stream 11, which this client never opened"),
        () -> String.valueOf(c.closeCause()));
  }

  @Test
  void anAgentThatFloodsUnopenedStreamsBeforeItsFirstAnswerIsCutOff() throws Exception {
    ClientOptions small = new ClientOptions(64 * 1024, dev.flotilla.agent.protocol.AgentProtocol.DEFAULT_OUTPUT_WINDOW, 32 * 1024);
    AgentClient c = client(small, (id, r) -> {});
    byte[] junk = new byte[60 * 1024];
    // more than another connection can have left behind: a flood, whatever the handshake's fate
    for (int i = 0; i <= FramedAgentClient.STALE_FRAMES && agent.conn.isOpen(); i++) {
      agent.conn.trySend(Frame.data(1000 + i, false, junk, false));
    }
    await().atMost(DEADLINE).until(() -> !c.isOpen());
    assertTrue(String.valueOf(c.closeCause()).contains("before the agent's first answer"), () -> String.valueOf(c.closeCause()));
  }

  @Test
  void connectGivesUpAfterItsDeadline() {
    AgentException e = assertThrows(AgentException.class,
        () -> AgentClients.connect(AgentAddress.parse("unix:/nonexistent/flotilla/agent.sock"), Duration.ofMillis(200)));
    assertEquals(AgentException.Code.UNAVAILABLE, e.code());
    assertTrue(e.getMessage().contains("unix:/nonexistent/flotilla/agent.sock"), e.getMessage());
  }
}
