package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameCodec;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.v1.Response;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Hostile and careless hosts: the agent drops the connection and keeps serving new ones. */
class RobustnessIT {

  private TestAgent agent;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-robust", 1);
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  /** Sends raw bytes, half-closes, and returns everything the agent sent back until it closed. */
  private byte[] exchange(byte[] bytes) throws Exception {
    return assertTimeoutPreemptively(DEADLINE, () -> {
      try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
        ch.connect(UnixDomainSocketAddress.of(agent.socket));
        ch.write(ByteBuffer.wrap(bytes));
        ch.shutdownOutput();
        InputStream in = Channels.newInputStream(ch);
        return in.readAllBytes();
      }
    });
  }

  private static Frame firstFrame(byte[] reply) throws Exception {
    return new FrameCodec(1 << 20).read(new ByteArrayInputStream(reply));
  }

  private void assertStillServing() throws Exception {
    AgentClient c = agent.handshaken();
    get(c.ping(DEADLINE));
    c.close();
    assertTrue(agent.process.isAlive());
  }

  @Test
  void oversizedFrameGetsGoAwayAndClose() throws Exception {
    byte[] header = ByteBuffer.allocate(10).putInt(0x7fff_0000).putInt(1).put((byte) 1).put((byte) 0).array();
    Frame f = firstFrame(exchange(header));
    assertEquals(FrameType.GOAWAY, f.type());
    assertTrue(f.reason().contains("exceeds the limit"), f.reason());
    assertStillServing();
  }

  @Test
  void unknownFrameTypeGetsGoAway() throws Exception {
    byte[] frame = ByteBuffer.allocate(12).putInt(2).putInt(1).put((byte) 99).put((byte) 0).put((byte) 1).put((byte) 2).array();
    Frame f = firstFrame(exchange(frame));
    assertEquals(FrameType.GOAWAY, f.type());
    assertTrue(f.reason().contains("unknown frame type 99"), f.reason());
    assertStillServing();
  }

  @Test
  void truncatedFrameGetsGoAway() throws Exception {
    byte[] partial = ByteBuffer.allocate(14).putInt(100).putInt(1).put((byte) 1).put((byte) 0).putInt(7).array();
    Frame f = firstFrame(exchange(partial));
    assertEquals(FrameType.GOAWAY, f.type());
    assertTrue(f.reason().contains("truncated"), f.reason());
    assertStillServing();
  }

  @Test
  void randomGarbageClosesTheConnectionOnly() throws Exception {
    Random random = new Random(7);
    for (int i = 0; i < 20; i++) {
      byte[] garbage = new byte[1 + random.nextInt(8192)];
      random.nextBytes(garbage);
      exchange(garbage); // returns only once the agent has closed the connection
    }
    assertStillServing();
  }

  @Test
  void malformedRequestIsAnsweredAndTheConnectionLives() throws Exception {
    FrameCodec codec = new FrameCodec(1 << 20);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(codec.encode(Frame.request(5, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff})));
    byte[] reply = exchange(out.toByteArray());
    Frame f = firstFrame(reply);
    assertEquals(FrameType.RESPONSE, f.type());
    assertEquals(5, f.streamId());
    Response r = Response.parseFrom(f.payload());
    assertEquals(dev.flotilla.agent.protocol.v1.Error.Code.INVALID_ARGUMENT, r.getError().getCode());
    assertStillServing();
  }

  @Test
  void manyConnectionsOverTimeLeakNoThreads() throws Exception {
    assertStillServing();
    long before = threads(agent.pid());
    for (int i = 0; i < 30; i++) {
      AgentClient c = agent.handshaken();
      get(c.ping(DEADLINE));
      c.close();
      get(c.closed());
    }
    // each connection's reader ends with it; allow the worker pool's idle threads
    await("reader threads end").atMost(DEADLINE).until(() -> threads(agent.pid()) <= before + 2);
  }

  private static long threads(long pid) throws Exception {
    for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
      if (line.startsWith("Threads:")) return Long.parseLong(line.substring(8).trim());
    }
    return -1;
  }
}
