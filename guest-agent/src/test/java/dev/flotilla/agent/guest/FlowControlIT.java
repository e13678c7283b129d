package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * 100 MB of output through a deliberately slow consumer: the process must block on its pipe, and
 * the agent must hold no more than its window, whatever the host's pace.
 */
class FlowControlIT {

  private static final long TOTAL = 100L * 1024 * 1024;
  private static final int WINDOW = AgentProtocol.DEFAULT_OUTPUT_WINDOW;
  /**
   * With the recommended lean flags (32 MiB heap, see README) the agent sits near 40-70 MiB RSS;
   * buffering the stream would need 100+ MiB (and overflow the heap).
   */
  private static final long RSS_BOUND = 120L * 1024 * 1024;

  private TestAgent agent;

  @AfterEach
  void stop() throws Exception {
    if (agent != null) agent.close();
  }

  private record Chunk(int length, Runnable release) {}

  private static final Chunk END = new Chunk(-1, () -> {});

  @Test
  void hundredMegabytesThroughASlowConsumerWithBoundedAgentMemory() throws Exception {
    agent = TestAgent.start("sbx-flow", 1, "-XX:+UseSerialGC", "-Xms8m", "-Xmx32m", "-XX:TieredStopAtLevel=1",
        "-XX:CICompilerCount=1", "-Xss512k", "-XX:-UsePerfData");
    AgentClient client = agent.handshaken();
    BlockingQueue<Chunk> chunks = new LinkedBlockingQueue<>();
    AtomicLong unreleased = new AtomicLong();
    OutputSink sink = new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {
        unreleased.addAndGet(data.length);
        chunks.add(new Chunk(data.length, () -> {
          unreleased.addAndGet(-data.length);
          release.run();
        }));
      }

      @Override
      public void onEnd(Channel channel) {
        if (channel == Channel.STDOUT) chunks.add(END);
      }
    };
    long pid = get(client.exec(ExecRequest.of("zeros", "head", "-c", Long.toString(TOTAL), "/dev/zero"), sink, DEADLINE));

    // Nothing released yet: exactly one window arrives, then head blocks on its full pipe.
    await("a full window").atMost(DEADLINE).until(() -> unreleased.get() == WINDOW);
    await("head blocked writing").atMost(DEADLINE).until(() -> state(pid) == 'S');
    long written = writtenBytes(pid);
    assertTrue(written <= WINDOW + 1024 * 1024, "head wrote " + written + " bytes past a window of " + WINDOW);
    assertEquals(WINDOW, unreleased.get(), "the agent sent more than the window");

    // Slow consumer: one chunk at a time, sampling the agent's RSS before each release.
    long total = 0;
    long maxRss = 0;
    long maxUnreleased = 0;
    while (true) {
      Chunk c = chunks.poll(DEADLINE.toSeconds(), TimeUnit.SECONDS);
      assertNotNull(c, "output stalled after " + total + " bytes");
      if (c == END) break;
      total += c.length();
      maxUnreleased = Math.max(maxUnreleased, unreleased.get());
      maxRss = Math.max(maxRss, TestAgent.rss(agent.pid()));
      c.release().run();
    }
    assertEquals(TOTAL, total);
    assertEquals(new ExitStatus(0, 0), get(client.waitProcess("zeros", DEADLINE)));
    assertTrue(maxUnreleased <= WINDOW, "unreleased bytes reached " + maxUnreleased);
    System.out.printf("100 MiB streamed; agent max VmRSS %.1f MiB%n", maxRss / 1048576.0);
    assertTrue(maxRss > 0 && maxRss < RSS_BOUND, "agent VmRSS reached " + maxRss + " bytes");
  }

  /** The process state letter from /proc/pid/stat ('S' sleeping, 'R' running, ...). */
  private static char state(long pid) throws IOException {
    String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
    return stat.charAt(stat.lastIndexOf(')') + 2);
  }

  private static long writtenBytes(long pid) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "io"))) {
      if (line.startsWith("wchar:")) return Long.parseLong(line.substring(6).trim());
    }
    throw new IllegalStateException("no wchar for " + pid);
  }
}
