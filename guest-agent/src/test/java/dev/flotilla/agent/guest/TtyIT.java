package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The agent's terminals, the agent run from its jar (JNA unpacked as usual): defaults, merged
 * output, ^D as the end of stdin, and ResizeTty's refusals. In a real sandbox (the runtime's JNA,
 * Ctrl-C, SIGWINCH): InteractiveExecTest and QemuImageTest in vm-supervisor.
 */
class TtyIT {
  private TestAgent agent;
  private AgentClient client;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-tty", 1);
    client = agent.handshaken();
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  private static ExecRequest onTerminal(String id, int rows, int cols, String... argv) {
    return new ExecRequest(id, List.of(argv), Map.of(), "", true, "", new ExecRequest.Tty(rows, cols, ""));
  }

  @Test
  void aTerminalOfTheDefaultSizeMergesOutputAndEndsStdinWithAnEof() throws Exception {
    CollectingSink sink = new CollectingSink();
    get(client.exec(onTerminal("sh", 0, 0, "sh", "-c", "tty; stty size; echo $TERM; echo to-stderr >&2; exec cat"), sink, DEADLINE));
    await().atMost(DEADLINE).until(() -> sink.stdout().contains("to-stderr"));
    assertTrue(sink.stdout().matches("/dev/pts/\\d+\r\n24 80\r\nxterm\r\nto-stderr\r\n"), sink.stdout());
    get(client.writeStdin("sh", "typed\n".getBytes(StandardCharsets.UTF_8), DEADLINE));
    await().atMost(DEADLINE).until(() -> sink.stdout().endsWith("typed\r\ntyped\r\n")); // the terminal's echo, then cat's
    get(client.closeStdin("sh", DEADLINE));
    assertEquals(new ExitStatus(0, 0), get(client.waitProcess("sh", DEADLINE)));
    get(sink.ended);
    assertEquals("", sink.stderr());
  }

  @Test
  void resizeIsRefusedWhereThereIsNoTerminal() throws Exception {
    get(client.exec(new ExecRequest("pipes", List.of("sleep", "100"), Map.of(), "", true), new CollectingSink(), DEADLINE));
    failure(Code.FAILED_PRECONDITION, client.resizeTty("pipes", 30, 100, DEADLINE));
    failure(Code.NOT_FOUND, client.resizeTty("nope", 30, 100, DEADLINE));
    get(client.exec(onTerminal("t", 10, 10, "sleep", "100"), new CollectingSink(), DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.resizeTty("t", 70000, 100, DEADLINE));
    get(client.resizeTty("t", 50, 200, DEADLINE));
    get(client.signalProcess("t", 9, DEADLINE));
    get(client.signalProcess("pipes", 9, DEADLINE));
    assertEquals(new ExitStatus(0, 9), get(client.waitProcess("t", DEADLINE)));
    // its terminal goes with it (once its output has been read to the end)
    await().atMost(DEADLINE).untilAsserted(() -> failure(Code.FAILED_PRECONDITION, client.resizeTty("t", 50, 200, DEADLINE)));
  }
}
