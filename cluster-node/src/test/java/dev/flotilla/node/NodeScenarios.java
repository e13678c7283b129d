package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.ByteString;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxServiceClient;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.StartSandboxRequest;
import dev.flotilla.api.v1.StopSandboxRequest;
import dev.flotilla.api.v1.WatchSandboxRequest;
import dev.flotilla.api.v1.WriteFileHeader;
import dev.flotilla.api.v1.WriteFileRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.awaitility.Awaitility;

/**
 * End-to-end scenarios against a real node through the generated gRPC client, shared by the H2
 * and PostgreSQL journals.
 */
abstract class NodeScenarios {
  static final Duration CALL = Duration.ofSeconds(30);
  static final Duration READY = Duration.ofSeconds(60);

  ActorSystem clientSystem;
  TestNode node;
  SandboxServiceClient client;
  String token;

  // ------------------------------------------------------------------------------ helpers

  static <T> T await(CompletionStage<T> stage) {
    try {
      return stage.toCompletableFuture().get(CALL.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException r) throw r;
      throw new AssertionError(e.getCause());
    } catch (Exception e) {
      throw new AssertionError(e);
    }
  }

  static Status.Code codeOf(Runnable call) {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      return e.getStatus().getCode();
    }
    fail("expected the call to fail");
    return null;
  }

  static StatusRuntimeException failure(Runnable call) {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      return e;
    }
    throw new AssertionError("expected the call to fail");
  }

  String bearer() {
    return "Bearer " + token;
  }

  Sandbox create(SandboxSpec spec, String requestId) {
    return await(client.createSandbox().addHeader("authorization", bearer())
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec).setRequestId(requestId).build()));
  }

  Sandbox get(String id) {
    return await(client.getSandbox().addHeader("authorization", bearer()).invoke(GetSandboxRequest.newBuilder().setId(id).build()));
  }

  Sandbox awaitPhase(String id, Phase phase) {
    Awaitility.await().atMost(READY).pollInterval(Duration.ofMillis(100)).until(() -> get(id).getPhase() == phase);
    return get(id);
  }

  record ExecResult(String stdout, String stderr, int exitCode, int signal) {}

  ExecResult exec(String id, String... argv) {
    List<ExecResponse> out = await(client.exec().addHeader("authorization", bearer())
        .invoke(ExecRequest.newBuilder().setSandboxId(id).addAllArgv(List.of(argv)).build())
        .runWith(Sink.seq(), clientSystem));
    var so = new ByteArrayOutputStream();
    var se = new ByteArrayOutputStream();
    ExecResponse last = out.get(out.size() - 1);
    assertTrue(last.hasExit(), "the last message of an exec is its exit status");
    for (ExecResponse r : out) {
      if (r.hasStdout()) so.writeBytes(r.getStdout().toByteArray());
      if (r.hasStderr()) se.writeBytes(r.getStderr().toByteArray());
    }
    return new ExecResult(so.toString(StandardCharsets.UTF_8), se.toString(StandardCharsets.UTF_8),
        last.getExit().getExitCode(), last.getExit().getSignal());
  }

  /** A main process's log as ReadLogs streamed it ({@code tail} as the API takes it: 0 all, -1 none). */
  record Logs(String stdout, String stderr, dev.flotilla.api.v1.ReadLogsResponse last) {}

  Logs logs(String id, int tail, boolean follow) {
    return logsAs(token, id, tail, follow);
  }

  Logs logsAs(String tok, String id, int tail, boolean follow) {
    List<dev.flotilla.api.v1.ReadLogsResponse> out = await(client.readLogs().addHeader("authorization", "Bearer " + tok)
        .invoke(dev.flotilla.api.v1.ReadLogsRequest.newBuilder().setId(id).setTail(tail).setFollow(follow).build())
        .runWith(Sink.seq(), clientSystem));
    var so = new ByteArrayOutputStream();
    var se = new ByteArrayOutputStream();
    for (dev.flotilla.api.v1.ReadLogsResponse r : out) {
      if (r.hasStdout()) so.writeBytes(r.getStdout().toByteArray());
      if (r.hasStderr()) se.writeBytes(r.getStderr().toByteArray());
    }
    return new Logs(so.toString(StandardCharsets.UTF_8), se.toString(StandardCharsets.UTF_8), out.isEmpty() ? null : out.get(out.size() - 1));
  }

  record Cli(int code, String out, String err) {}

  /** The real CLI in this JVM against the node, as the default tenant, with {@code stdin}. */
  Cli cli(String stdin, String... args) {
    return cliAs(token, stdin, args);
  }

  /** The real CLI in this JVM against the node, with {@code tok} (FLOTILLA_TOKEN) and {@code stdin}. */
  Cli cliAs(String tok, String stdin, String... args) {
    var out = new ByteArrayOutputStream();
    var err = new ByteArrayOutputStream();
    int code = new dev.flotilla.cli.Cli(new dev.flotilla.cli.CliContext(
        java.util.Map.of("FLOTILLA_ENDPOINT", "127.0.0.1:" + node.node.grpcPort(), "FLOTILLA_TOKEN", tok), node.dataDir,
        new java.io.PrintStream(out, true, StandardCharsets.UTF_8), new java.io.PrintStream(err, true, StandardCharsets.UTF_8),
        new java.io.ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)))).run(args);
    return new Cli(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  static SandboxSpec spec() {
    return SandboxSpec.newBuilder().setDriver("process").setVcpus(1).setMemoryMib(256).putLabels("suite", "e2e").build();
  }

  /**
   * The gRPC client's actor system: local only. (The test class path has the node's
   * application.conf, which would make it a cluster member on the node's default port.)
   */
  static ActorSystem clientSystem() {
    return ActorSystem.create("client", com.typesafe.config.ConfigFactory.parseString("pekko.actor.provider = local")
        .withFallback(com.typesafe.config.ConfigFactory.load()));
  }

  /** Starts {@code n} and a client of it, with the default tenant's token. */
  void boot(TestNode n) throws java.io.IOException {
    clientSystem = clientSystem();
    node = n.start();
    client = node.client(clientSystem);
    token = node.defaultToken();
  }

  /** Deletes what the test made, stops the nodes, kills any sandbox process left, closes the client. */
  void tearDown(TestNode... nodes) {
    try {
      deleteAll();
    } finally {
      for (TestNode n : nodes) {
        if (n == null) continue;
        n.close();
        n.killVms();
        n.deleteDataDir();
      }
      if (clientSystem != null) clientSystem.terminate();
    }
  }

  void deleteAll() {
    if (client == null) return;
    for (Sandbox s : await(client.listSandboxes().addHeader("authorization", bearer())
        .invoke(ListSandboxesRequest.newBuilder().setPageSize(1000).build())).getSandboxesList()) {
      await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(s.getId()).build()));
    }
  }

  // ------------------------------------------------------------------------------ scenarios

  /** The whole life of one sandbox through the public API. */
  void lifecycle() {
    Sandbox created = create(spec(), "");
    String id = created.getId();
    assertTrue(created.getPhase() == Phase.CREATING || created.getPhase() == Phase.RUNNING, created.getPhase().toString());
    assertEquals("default", created.getTenant());
    Sandbox running = awaitPhase(id, Phase.RUNNING);
    assertEquals(1, running.getIncarnation());
    assertFalse(running.getNode().isEmpty());

    // exec: output of both streams and the exit code
    ExecResult r = exec(id, "sh", "-c", "echo out; echo err >&2; exit 3");
    assertEquals("out\n", r.stdout());
    assertEquals("err\n", r.stderr());
    assertEquals(3, r.exitCode());
    assertEquals(0, r.signal());

    // files: a few MB up and back, byte for byte
    byte[] data = new byte[3 * 1024 * 1024 + 17];
    new Random(42).nextBytes(data);
    List<WriteFileRequest> chunks = new ArrayList<>();
    chunks.add(WriteFileRequest.newBuilder().setHeader(WriteFileHeader.newBuilder().setSandboxId(id).setPath("/tmp/blob.bin")).build());
    for (int off = 0; off < data.length; off += 256 * 1024) {
      chunks.add(WriteFileRequest.newBuilder().setData(ByteString.copyFrom(data, off, Math.min(256 * 1024, data.length - off))).build());
    }
    long size = await(client.writeFile().addHeader("authorization", bearer()).invoke(Source.from(chunks))).getSize();
    assertEquals(data.length, size);
    var back = new ByteArrayOutputStream();
    await(client.readFile().addHeader("authorization", bearer())
        .invoke(ReadFileRequest.newBuilder().setSandboxId(id).setPath("/tmp/blob.bin").build())
        .runForeach(c -> back.writeBytes(c.getData().toByteArray()), clientSystem));
    assertArrayEquals(data, back.toByteArray());
    assertEquals(String.valueOf(data.length), exec(id, "sh", "-c", "wc -c < /tmp/blob.bin").stdout().trim());

    // pause: the sandbox's processes stop, exec is refused until resume
    Sandbox paused = await(client.pauseSandbox().addHeader("authorization", bearer()).invoke(PauseSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Phase.PAUSED, paused.getPhase());
    var refused = failure(() -> exec(id, "true"));
    assertEquals(Status.Code.FAILED_PRECONDITION, refused.getStatus().getCode());
    assertTrue(refused.getStatus().getDescription().contains("resume"), refused.getStatus().getDescription());
    Sandbox resumed = await(client.resumeSandbox().addHeader("authorization", bearer()).invoke(ResumeSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Phase.RUNNING, resumed.getPhase());
    assertEquals(0, exec(id, "true").exitCode());

    // stop, then start: a new incarnation
    Sandbox stopped = await(client.stopSandbox().addHeader("authorization", bearer()).invoke(StopSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Phase.STOPPED, stopped.getPhase());
    assertEquals(Status.Code.FAILED_PRECONDITION, codeOf(() -> exec(id, "true")));
    await(client.startSandbox().addHeader("authorization", bearer()).invoke(StartSandboxRequest.newBuilder().setId(id).build()));
    Sandbox again = awaitPhase(id, Phase.RUNNING);
    assertEquals(2, again.getIncarnation());
    assertEquals("ok\n", exec(id, "echo", "ok").stdout());

    // suspend with the CLI: the process driver keeps the writable disk only (no CRIU), and says so;
    // an exec resumes it (a new incarnation) on that disk; a fork is refused with why
    exec(id, "sh", "-c", "echo on-disk > /kept");
    Cli suspended = cli("", "suspend", id);
    assertEquals(List.of(0, id + " SUSPENDED\n"), List.of(suspended.code(), suspended.out()), suspended.err());
    assertTrue(get(id).getStatusMessage().contains("processes and memory are not"), get(id).getStatusMessage());
    Cli resumedByExec = cli("", "exec", id, "--", "cat", "/kept");
    assertEquals(List.of(0, "on-disk\n"), List.of(resumedByExec.code(), resumedByExec.out()), resumedByExec.err());
    assertEquals(List.of(Phase.RUNNING, 3L), List.of(get(id).getPhase(), get(id).getIncarnation()));
    Cli fork = cli("", "fork", id);
    assertTrue(fork.code() != 0 && fork.err().contains("cannot snapshot"), fork.code() + " " + fork.err());

    // delete: gone for good
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> get(id)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> exec(id, "true")));
  }

  /** Watch starts with the current state and follows every change until the sandbox is deleted. */
  void watch() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    var seen = new java.util.concurrent.ConcurrentLinkedQueue<SandboxEvent>();
    var done = client.watchSandbox().addHeader("authorization", bearer())
        .invoke(WatchSandboxRequest.newBuilder().setId(id).build())
        .runForeach(seen::add, clientSystem);
    // Once the snapshot is here the watch is subscribed: every change after it must show.
    Awaitility.await().atMost(READY).until(() -> !seen.isEmpty());
    await(client.pauseSandbox().addHeader("authorization", bearer()).invoke(PauseSandboxRequest.newBuilder().setId(id).build()));
    await(client.resumeSandbox().addHeader("authorization", bearer()).invoke(ResumeSandboxRequest.newBuilder().setId(id).build()));
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
    await(done); // the stream ends by itself when the sandbox is deleted
    List<String> names = seen.stream().map(SandboxEvent::getEvent).toList();
    assertEquals("snapshot", names.get(0), names.toString());
    assertTrue(names.containsAll(List.of("paused", "resumed")), names.toString());
    assertEquals(Phase.DELETED, List.copyOf(seen).get(seen.size() - 1).getSandbox().getPhase(), names.toString());
  }
}
