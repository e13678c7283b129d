package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.images.Digest;
import dev.flotilla.images.TestRegistry;
import dev.flotilla.images.TestTools;
import dev.flotilla.images.TestUmoci;
import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * A sandbox's main process end to end on a real node (process driver): its exit ends the VM with
 * its status under the restart policy, its output is logged on the node and read with ReadLogs
 * (tail, follow) and the CLI, nothing is lost across a node restart, and --image-command runs the
 * image's Entrypoint and Cmd.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class MainProcessIT extends NodeScenarios {

  @BeforeAll
  void start() throws Exception {
    boot(new TestNode(TestNode.shortTempDir(), null));
  }

  @AfterEach
  void deleteSandboxes() {
    deleteAll();
  }

  @AfterAll
  void stop() {
    tearDown(node);
  }

  static SandboxSpec withMain(RestartPolicy policy, String script) {
    return SandboxSpec.newBuilder(spec()).setRestartPolicy(policy).addAllCommand(List.of("sh", "-c", script)).build();
  }

  @Test
  void theMainProcessEndsItsVmWithItsStatusAndItsLogTellsWhy() {
    // stdout and stderr are two pipes: their relative order is what the node read first. The pause
    // keeps it plain for the tail below.
    String script = "echo err-1 >&2; sleep 0.3; echo out-1; echo out-2; exit 3";
    Sandbox created = create(withMain(RestartPolicy.NEVER, script), "");
    assertEquals(List.of("sh", "-c", script), created.getSpec().getCommandList());
    String id = created.getId();
    Sandbox stopped = awaitPhase(id, Phase.STOPPED);
    assertEquals("main process exited with code 3", stopped.getStatusMessage());

    Logs all = logs(id, 0, false);
    assertEquals("out-1\nout-2\n", all.stdout());
    assertEquals("err-1\n", all.stderr());
    assertEquals("out-2\n", logs(id, 1, false).stdout(), "--tail 1: the last line of both channels");
    Logs three = logs(id, 3, false);
    assertEquals("out-1\nout-2\n", three.stdout());
    assertEquals("err-1\n", three.stderr());
    assertEquals("", logs(id, -1, false).stdout(), "tail -1: none");
    // Following a sandbox whose main process has ended ends at once, with its status.
    Logs followed = logs(id, -1, true);
    assertTrue(followed.last().hasExit(), String.valueOf(followed.last()));
    assertEquals(3, followed.last().getExit().getExitCode());
  }

  @Test
  void aFollowStreamsNewOutputUntilTheMainProcessExits() {
    String id = create(withMain(RestartPolicy.NEVER,
        "i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo line $i; sleep 0.2; done; echo bye >&2"), "").getId();
    // From CREATING on: the follow waits for the first output and ends with the exit.
    Logs followed = logs(id, 0, true);
    assertEquals("line 1\nline 2\nline 3\nline 4\nline 5\n", followed.stdout());
    assertEquals("bye\n", followed.stderr());
    assertTrue(followed.last().hasExit());
    assertEquals(0, followed.last().getExit().getExitCode());
    assertEquals("main process exited with code 0", awaitPhase(id, Phase.STOPPED).getStatusMessage());
  }

  @Test
  void aMainProcessThatClosesItsOutputRunsOnUntilItExits() {
    // Its output ends at once; it exits 6 s later, past the node's 5 s call timeout.
    String id = create(withMain(RestartPolicy.NEVER, "echo bye; exec >/dev/null 2>&1; sleep 6; exit 5"), "").getId();
    Awaitility.await().atMost(READY).until(() -> logs(id, 0, false).stdout().equals("bye\n"));
    assertEquals(Phase.RUNNING, get(id).getPhase(), "still running after its output ended");
    assertEquals("main process exited with code 5", awaitPhase(id, Phase.STOPPED).getStatusMessage());
  }

  @Test
  void onFailureRestartsTheMainProcessAndTheLogKeepsEveryRun() {
    // Fails twice (a marker on the writable layer counts the runs, which survives restarts), then succeeds.
    String id = create(withMain(RestartPolicy.ON_FAILURE,
        "n=$(cat /run-count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /run-count; echo run $n; [ $n -ge 3 ]"), "").getId();
    Sandbox done = awaitPhase(id, Phase.STOPPED);
    assertEquals("main process exited with code 0", done.getStatusMessage());
    assertEquals(3, done.getIncarnation(), done.toString());
    assertEquals("run 1\nrun 2\nrun 3\n", logs(id, 0, false).stdout());
  }

  @Test
  void aNodeRestartLosesNoOutputOfARunningMainProcess() throws Exception {
    String id = create(withMain(RestartPolicy.NEVER, "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"), "").getId();
    Awaitility.await().atMost(READY).until(() -> logs(id, 0, false).stdout().lines().count() >= 5);
    node.close(); // the node stops; the sandbox and its main process keep running, their output waits in the agent
    node.start();
    client = node.client(clientSystem);
    Awaitility.await().atMost(READY).until(() -> get(id).getStatusMessage().contains("re-attached"));
    long before = logs(id, 0, false).stdout().lines().count();
    Awaitility.await().atMost(READY).until(() -> logs(id, 0, false).stdout().lines().count() >= before + 10);
    List<String> lines = logs(id, 0, false).stdout().lines().toList();
    List<String> expected = new ArrayList<>();
    for (int i = 1; i <= lines.size(); i++) expected.add(Integer.toString(i));
    assertEquals(expected, lines, "every line once, in order, across the node's restart");
    assertEquals(1, get(id).getIncarnation(), "the same VM, re-attached");
  }

  @Test
  void badRequestsSayWhatToFix() {
    String plain = create(spec(), "").getId();
    var noMain = failure(() -> logs(plain, 0, false));
    assertEquals(Status.Code.FAILED_PRECONDITION, noMain.getStatus().getCode());
    assertTrue(noMain.getStatus().getDescription().contains("no main process"), noMain.getStatus().getDescription());

    String id = create(withMain(RestartPolicy.NEVER, "echo mine"), "").getId();
    assertEquals(Status.Code.NOT_FOUND, failure(() -> logsAs(TestNode.OTHER_TOKEN, id, 0, false)).getStatus().getCode());
    assertEquals(Status.Code.INVALID_ARGUMENT, failure(() -> logs(id, -2, false)).getStatus().getCode());

    var noImage = failure(() -> await(client.createSandbox().addHeader("authorization", bearer())
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec()).setImageCommand(true).build())));
    assertEquals(Status.Code.INVALID_ARGUMENT, noImage.getStatus().getCode());
    assertTrue(noImage.getStatus().getDescription().contains("name the image"), noImage.getStatus().getDescription());
    var emptyProgram = failure(() -> create(SandboxSpec.newBuilder(spec()).addCommand("").addCommand("x").build(), ""));
    assertEquals(Status.Code.INVALID_ARGUMENT, emptyProgram.getStatus().getCode());

    // A command the image does not have: the VM ends as a container's would, with 127, and says why.
    String missing = create(SandboxSpec.newBuilder(spec()).setRestartPolicy(RestartPolicy.NEVER).addCommand("/no/such/program").build(), "")
        .getId();
    Sandbox ended = awaitPhase(missing, Phase.STOPPED);
    assertTrue(ended.getStatusMessage().startsWith("main process could not start: "), ended.getStatusMessage());
    assertEquals(127, logs(missing, -1, true).last().getExit().getExitCode());
  }

  @Test
  void theCliRunsAMainProcessAndTheImagesOwnCommand() throws Exception {
    Cli created = cli("", "create", "--restart", "never", "--", "sh", "-c", "echo from the cli; echo oops >&2; exit 2");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    awaitPhase(id, Phase.STOPPED);
    Cli all = cli("", "logs", id);
    assertEquals(0, all.code(), all.err());
    assertEquals("from the cli\n", all.out());
    assertEquals("oops\n", all.err());
    Cli tail = cli("", "logs", id, "--tail", "1", "--follow");
    assertEquals(0, tail.code(), tail.err());
    // one line, the last one the agent read: the two echoes go down two pipes, read by two threads,
    // so which of them came last is the agent's to see (under load either)
    String last = tail.out() + tail.err();
    assertTrue(last.equals("from the cli\n") || last.equals("oops\n"), "one line: '" + tail.out() + "' / '" + tail.err() + "'");
    assertEquals(last.equals("oops\n") ? "" : "from the cli\n", tail.out());

    Cli both = cli("", "create", "--image", "x", "--image-command", "--", "true");
    assertEquals(2, both.code(), "a usage error: " + both.err());

    // An image whose Entrypoint + Cmd print from its own files, pushed to a registry on loopback.
    TestUmoci.requireTools();
    Path busybox = Path.of(System.getProperty("flotilla.default.image", "../guest-image/out/default-image/rootfs")).toAbsolutePath();
    Path work = Files.createTempDirectory("main-it");
    try (TestRegistry registry = TestRegistry.start(work, "127.0.0.1", "")) {
      Path layout = work.resolve("layout");
      TestUmoci.build(work, layout, "v1", busybox, Map.of("srv/motd", "hello from the image\n"), List.of("PATH=/bin"), "/srv", "0:0");
      TestTools.run(work, "umoci", "config", "--image", layout + ":v1", "--config.entrypoint", "sh",
          "--config.cmd", "-c", "--config.cmd", "cat motd");
      Digest digest = TestUmoci.push(layout, "v1", registry.address(), "demo/motd:1");
      String ref = registry.address() + "/demo/motd:1";
      Cli fromImage = cli("", "create", "--image", ref, "--image-command", "--restart", "never");
      assertEquals(0, fromImage.code(), fromImage.err());
      String imageSandbox = fromImage.out().strip();
      Sandbox s = awaitPhase(imageSandbox, Phase.STOPPED);
      assertEquals(List.of("sh", "-c", "cat motd"), s.getSpec().getCommandList(), "Entrypoint then Cmd, recorded at create");
      assertEquals(ref + "@" + digest, s.getSpec().getImage());
      assertEquals("hello from the image\n", cli("", "logs", imageSandbox).out());
    } finally {
      TestTools.run(null, "rm", "-rf", work.toString());
    }
  }
}
