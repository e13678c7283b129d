package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class ExecIT {

  private TestAgent agent;
  private AgentClient client;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-exec", 1);
    client = agent.handshaken();
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  private ExitStatus run(CollectingSink sink, ExecRequest r) throws Exception {
    get(client.exec(r, sink, DEADLINE));
    ExitStatus status = get(client.waitProcess(r.execId(), DEADLINE));
    get(sink.ended);
    return status;
  }

  @Test
  void exitCodesAndOutputChannels() throws Exception {
    CollectingSink ok = new CollectingSink();
    assertEquals(new ExitStatus(0, 0), run(ok, ExecRequest.of("ok", "sh", "-c", "echo out; echo err >&2")));
    assertEquals("out\n", ok.stdout());
    assertEquals("err\n", ok.stderr());
    assertEquals(new ExitStatus(3, 0), run(new CollectingSink(), ExecRequest.of("three", "sh", "-c", "exit 3")));
  }

  @Test
  void environmentAndWorkingDirectory() throws Exception {
    CollectingSink sink = new CollectingSink();
    run(sink, new ExecRequest("env", List.of("sh", "-c", "echo $HOME $LANG $FOO; pwd"), Map.of("FOO", "bar"), "/tmp", false));
    assertEquals("/root C.UTF-8 bar\n/tmp\n", sink.stdout());
  }

  @Test
  void everyProcessKnowsItsSandboxAndIncarnationAndARequestCannotFakeThem() throws Exception {
    CollectingSink sink = new CollectingSink();
    run(sink, new ExecRequest("who", List.of("sh", "-c", "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION"),
        Map.of("FLOTILLA_SANDBOX_ID", "other", "FLOTILLA_INCARNATION", "99"), "", false));
    assertEquals(agent.sandboxId + " " + agent.incarnation + "\n", sink.stdout());
  }

  @Test
  void stdinIsEmptyUnlessRequested() throws Exception {
    CollectingSink sink = new CollectingSink();
    assertEquals(0, run(sink, ExecRequest.of("cat", "cat")).exitCode());
    assertEquals("", sink.stdout());
  }

  @Test
  void stdinToStdoutThroughCat() throws Exception {
    CollectingSink sink = new CollectingSink();
    ExecRequest r = new ExecRequest("cat", List.of("cat"), Map.of(), "", true);
    get(client.exec(r, sink, DEADLINE));
    get(client.writeStdin("cat", "hello ".getBytes(StandardCharsets.UTF_8), DEADLINE));
    get(client.writeStdin("cat", "world\n".getBytes(StandardCharsets.UTF_8), DEADLINE));
    get(client.closeStdin("cat", DEADLINE));
    assertEquals(new ExitStatus(0, 0), get(client.waitProcess("cat", DEADLINE)));
    get(sink.ended);
    assertEquals("hello world\n", sink.stdout());
    failure(Code.FAILED_PRECONDITION, client.writeStdin("cat", new byte[1], DEADLINE));
  }

  @Test
  void fiftyConcurrentExecs() throws Exception {
    List<CollectingSink> sinks = new ArrayList<>();
    List<CompletableFuture<ExitStatus>> exits = new ArrayList<>();
    for (int i = 0; i < 50; i++) {
      CollectingSink sink = new CollectingSink();
      sinks.add(sink);
      String id = "p" + i;
      exits.add(client.exec(ExecRequest.of(id, "sh", "-c", "echo " + i + "; exit " + (i % 5)), sink, DEADLINE)
          .thenCompose(pid -> client.waitProcess(id, DEADLINE)));
    }
    for (int i = 0; i < 50; i++) {
      assertEquals(new ExitStatus(i % 5, 0), get(exits.get(i)));
      get(sinks.get(i).ended);
      assertEquals(i + "\n", sinks.get(i).stdout());
    }
  }

  @Test
  void signalsEndProcessesAndAreReported() throws Exception {
    get(client.exec(ExecRequest.of("term", "sleep", "1000"), new CollectingSink(), DEADLINE));
    get(client.exec(ExecRequest.of("kill", "sleep", "1000"), new CollectingSink(), DEADLINE));
    get(client.exec(ExecRequest.of("usr1", "sleep", "1000"), new CollectingSink(), DEADLINE));
    get(client.signalProcess("term", 15, DEADLINE));
    get(client.signalProcess("kill", 9, DEADLINE));
    get(client.signalProcess("usr1", 10, DEADLINE));
    assertEquals(new ExitStatus(0, 15), get(client.waitProcess("term", DEADLINE)));
    assertEquals(new ExitStatus(0, 9), get(client.waitProcess("kill", DEADLINE)));
    assertEquals(new ExitStatus(0, 10), get(client.waitProcess("usr1", DEADLINE)));
    assertEquals(137, new ExitStatus(0, 9).shellCode());
  }

  @Test
  void execIdsAreUniqueAndUnknownIdsNotFound() throws Exception {
    get(client.exec(ExecRequest.of("dup", "sleep", "1000"), new CollectingSink(), DEADLINE));
    failure(Code.ALREADY_EXISTS, client.exec(ExecRequest.of("dup", "true"), new CollectingSink(), DEADLINE));
    failure(Code.NOT_FOUND, client.waitProcess("nope", DEADLINE));
    failure(Code.NOT_FOUND, client.signalProcess("nope", 15, DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.exec(ExecRequest.of("missing", "/no/such/binary"), new CollectingSink(), DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.signalProcess("dup", 99, DEADLINE));
    get(client.signalProcess("dup", 9, DEADLINE));
  }

  @Test
  void waitDeadlineIsReportedAsDeadlineExceeded() throws Exception {
    get(client.exec(ExecRequest.of("slow", "sleep", "1000"), new CollectingSink(), DEADLINE));
    failure(Code.DEADLINE_EXCEEDED, client.waitProcess("slow", java.time.Duration.ofMillis(200)));
    get(client.ping(DEADLINE)); // the connection is still fine
  }

  @Test
  void processOutlivesItsConnectionAndAnyConnectionMayWait() throws Exception {
    // A sink that never releases: the process blocks on its full pipe until the connection goes.
    dev.flotilla.agent.protocol.client.OutputSink hoarder = new dev.flotilla.agent.protocol.client.OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {}

      @Override
      public void onEnd(Channel channel) {}
    };
    get(client.exec(ExecRequest.of("big", "head", "-c", "20000000", "/dev/zero"), hoarder, DEADLINE));
    client.close();
    AgentClient second = agent.handshaken();
    // the output of the dead connection is drained and dropped, so head can finish
    assertEquals(new ExitStatus(0, 0), get(second.waitProcess("big", DEADLINE)));
    assertTrue(second.isOpen());
  }
}
