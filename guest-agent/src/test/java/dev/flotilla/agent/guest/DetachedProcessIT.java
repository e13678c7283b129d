package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.GuestProcesses;
import dev.flotilla.agent.protocol.client.OutputRead;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Detached processes (the sandbox's main process): output in the agent's ring, read from any connection. */
class DetachedProcessIT {

  private TestAgent agent;
  private AgentClient client;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-detached", 1);
    client = agent.handshaken();
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  /** Everything from {@code offset} until the output ends, long-polling; stdout and stderr kept apart. */
  private static String[] drain(AgentClient c, String execId, long offset) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    while (true) {
      OutputRead r = get(c.readOutput(execId, offset, 1 << 16, Duration.ofSeconds(2), DEADLINE));
      assertEquals(offset, r.offset(), "nothing dropped from a ring this size");
      for (OutputRead.Chunk ch : r.chunks()) (ch.stderr() ? err : out).write(ch.data());
      offset = r.next();
      if (r.eof()) return new String[] {out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8)};
    }
  }

  @Test
  void outputOutlivesTheConnectionThatStartedIt() throws Exception {
    get(client.execDetached(ExecRequest.of("main", "sh", "-c",
        "echo one; echo two >&2; sleep 0.3; echo three; exit 4"), 1 << 20, DEADLINE));
    client.close();
    try (AgentClient again = agent.handshaken()) {
      String[] out = drain(again, "main", 0);
      assertEquals("one\nthree\n", out[0]);
      assertEquals("two\n", out[1]);
      assertEquals(new ExitStatus(4, 0), get(again.waitProcess("main", DEADLINE)));
      // A second start under the same id is refused while the process is known: the node relies on it to start main once.
      failure(Code.ALREADY_EXISTS, again.execDetached(ExecRequest.of("main", "true"), 1 << 20, DEADLINE));
    }
  }

  @Test
  void aFullRingDropsTheOldestOutputAndSaysHowMuch() throws Exception {
    // 200 KiB of output into a 64 KiB ring, read only after it has ended.
    get(client.execDetached(ExecRequest.of("loud", "sh", "-c", "head -c 204800 /dev/zero | tr '\\0' x"), 65536, DEADLINE));
    assertEquals(new ExitStatus(0, 0), get(client.waitProcess("loud", DEADLINE)));
    long total = 0;
    long offset = 0;
    boolean first = true;
    while (true) {
      OutputRead r = get(client.readOutput("loud", offset, 1 << 16, Duration.ZERO, DEADLINE));
      if (first) {
        assertTrue(r.offset() > 0 && r.offset() <= 204800 - 32768, "the oldest output was dropped: read starts at " + r.offset());
        first = false;
      }
      for (OutputRead.Chunk ch : r.chunks()) total += ch.data().length;
      offset = r.next();
      if (r.eof()) break;
    }
    assertEquals(204800, offset, "offsets count every byte written");
    assertTrue(total <= 65536, "no more than the ring holds: " + total);
  }

  @Test
  void aReadWaitsForOutputThenAnswers() throws Exception {
    get(client.execDetached(ExecRequest.of("slow", "sleep", "30"), 4096, DEADLINE));
    OutputRead empty = get(client.readOutput("slow", 0, 100, Duration.ofMillis(200), DEADLINE));
    assertTrue(empty.chunks().isEmpty());
    assertFalse(empty.eof());
    failure(Code.FAILED_PRECONDITION, client.writeStdin("slow", "x\n".getBytes(StandardCharsets.UTF_8), DEADLINE));
    get(client.signalProcess("slow", 15, DEADLINE));
    String[] out = drain(client, "slow", 0);
    assertEquals("", out[0]);
    assertEquals(15, get(client.waitProcess("slow", DEADLINE)).signal());
  }

  @Test
  void listProcessesShowsRunningAndExitedProcessesOldestFirstAndBounded() throws Exception {
    get(client.execDetached(ExecRequest.of("first", "sh", "-c", "echo hello; exit 3"), 4096, DEADLINE));
    assertEquals(new ExitStatus(3, 0), get(client.waitProcess("first", DEADLINE)));
    get(client.execDetached(ExecRequest.of("second", "sleep", "30"), 4096, DEADLINE));
    CollectingSink sink = new CollectingSink();
    get(client.exec(ExecRequest.of("third", "sh", "-c", "x".repeat(2000) + "=1; true"), sink, DEADLINE));

    GuestProcesses all = get(client.listProcesses(0, DEADLINE));
    assertFalse(all.truncated());
    assertEquals(java.util.List.of("first", "second", "third"), all.processes().stream().map(GuestProcesses.Entry::execId).toList());
    GuestProcesses.Entry first = all.processes().get(0);
    assertEquals(java.util.Optional.of(new ExitStatus(3, 0)), first.exit(), "an exited process keeps its status");
    assertTrue(first.detached());
    assertEquals(6, first.outputEnd(), "the offset past \"hello\\n\"");
    assertEquals(java.util.List.of("sh", "-c", "echo hello; exit 3"), first.argv());
    GuestProcesses.Entry second = all.processes().get(1);
    assertTrue(second.exit().isEmpty(), "sleep runs");
    assertTrue(second.pid() > 0);
    GuestProcesses.Entry third = all.processes().get(2);
    assertFalse(third.detached());
    assertTrue(third.argvTruncated(), "a long argv is cut");
    assertTrue(third.argv().stream().mapToInt(String::length).sum() <= 512);

    GuestProcesses one = get(client.listProcesses(1, DEADLINE));
    assertEquals(1, one.processes().size());
    assertTrue(one.truncated());

    get(client.signalProcess("second", 15, DEADLINE));
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).until(() ->
        get(client.listProcesses(0, DEADLINE)).processes().get(1).exit().equals(java.util.Optional.of(new ExitStatus(0, 15))));
  }

  @Test
  void readingAnAttachedProcessIsRefused() throws Exception {
    CollectingSink sink = new CollectingSink();
    get(client.exec(ExecRequest.of("attached", "true"), sink, DEADLINE));
    failure(Code.FAILED_PRECONDITION, client.readOutput("attached", 0, 100, Duration.ZERO, DEADLINE));
    failure(Code.NOT_FOUND, client.readOutput("nobody", 0, 100, Duration.ZERO, DEADLINE));
  }
}
