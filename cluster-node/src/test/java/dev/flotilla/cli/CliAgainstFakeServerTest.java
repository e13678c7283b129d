package dev.flotilla.cli;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxResponse;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.ExitStatus;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ListSandboxesResponse;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.WatchSandboxRequest;
import io.grpc.Status;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CLI's commands against a fake SandboxService on a loopback port: what goes on the wire, what
 * is printed, and which exit code comes back. Tests the CLI at its own level; the node side is
 * covered by the node's end-to-end tests.
 */
class CliAgainstFakeServerTest {
  @TempDir Path dir;
  private TestSandboxServer server;

  @AfterEach
  void stop() {
    if (server != null) server.close();
  }

  private TestCli cli() {
    // no ambient FLOTILLA_* variables and no ./data: each test says what it has
    return new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint())
        .env(CliContext.ENV_TOKEN, "t0k");
  }

  private static Sandbox sandbox(String id, Phase phase) {
    return Sandbox.newBuilder().setId(id).setTenant("default").setPhase(phase).setIncarnation(1)
        .setNode("127.0.0.1:25520")
        .setSpec(SandboxSpec.newBuilder().setDriver("process").putLabels("app", "web"))
        .setCreatedAt(Timestamp.newBuilder().setSeconds(Instant.now().getEpochSecond() - 90))
        .build();
  }

  @Test
  void create_sends_the_spec_and_prints_only_the_id() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> sandbox("sb-1", Phase.CREATING))
        .start();

    TestCli.Result r = cli().run("create", "--no-wait", "--driver", "qemu", "--cpus", "2", "--memory", "512",
        "--label", "app=web", "--label", "tier=", "--restart", "on-failure", "--request-id", "r-1");

    assertEquals(0, r.exitCode(), r.err());
    assertEquals("sb-1\n", r.out());
    assertEquals("", r.err());
    CreateSandboxRequest sent = (CreateSandboxRequest) server.requests.get(0);
    assertEquals("qemu", sent.getSpec().getDriver());
    assertEquals(2, sent.getSpec().getVcpus());
    assertEquals(512, sent.getSpec().getMemoryMib());
    assertEquals(Map.of("app", "web", "tier", ""), sent.getSpec().getLabelsMap());
    assertEquals(RestartPolicy.ON_FAILURE, sent.getSpec().getRestartPolicy());
    assertEquals("r-1", sent.getRequestId());
  }

  @Test
  void create_waits_until_the_sandbox_runs_then_prints_only_the_id_and_ends_the_watch() throws Exception {
    CountDownLatch cancelled = new CountDownLatch(1);
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> sandbox("sb-9", Phase.CREATING))
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) -> {
          ((io.grpc.stub.ServerCallStreamObserver<SandboxEvent>) out).setOnCancelHandler(cancelled::countDown);
          out.onNext(event("snapshot", sandbox("sb-9", Phase.CREATING)));
          out.onNext(event("running", sandbox("sb-9", Phase.RUNNING)));
          // and then nothing: the CLI must end the watch itself
        })
        .start();

    TestCli.Result r = cli().run("create");

    assertEquals(0, r.exitCode(), r.err());
    assertEquals("sb-9\n", r.out());
    assertEquals("", r.err());
    assertEquals("sb-9", ((WatchSandboxRequest) server.requests.get(1)).getId());
    assertTrue(cancelled.await(10, TimeUnit.SECONDS), "the watch was left open");
  }

  @Test
  void create_of_a_sandbox_that_fails_prints_its_id_and_the_reason_and_exits_1() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> sandbox("sb-8", Phase.CREATING))
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) -> {
          out.onNext(event("snapshot", sandbox("sb-8", Phase.CREATING)));
          out.onNext(event("failed", sandbox("sb-8", Phase.FAILED).toBuilder()
              .setStatusMessage("restart budget exhausted after 5 restarts; last: image not found").build()));
        })
        .start();

    TestCli.Result r = cli().run("create");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("sb-8\n", r.out());
    assertEquals("flotilla: sandbox sb-8 FAILED: restart budget exhausted after 5 restarts; last: image not found\n", r.err());
  }

  @Test
  void create_stops_waiting_after_the_wait_timeout_and_says_so() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> sandbox("sb-7", Phase.CREATING))
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) ->
            out.onNext(event("snapshot", sandbox("sb-7", Phase.CREATING).toBuilder().setStatusMessage("pulling").build())))
        .start();

    TestCli.Result r = cli().run("create", "--wait-timeout", "1s");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("sb-7\n", r.out());
    assertTrue(r.err().startsWith("flotilla: sandbox sb-7 is still CREATING after 1s: pulling; "), r.err());
  }

  @Test
  void create_without_options_leaves_every_choice_to_the_node() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> sandbox("sb-2", Phase.CREATING))
        .start();

    assertEquals(0, cli().run("create", "--no-wait").exitCode());

    CreateSandboxRequest sent = (CreateSandboxRequest) server.requests.get(0);
    assertEquals(SandboxSpec.getDefaultInstance(), sent.getSpec());
    assertEquals("", sent.getRequestId());
  }

  @Test
  void exec_streams_output_as_it_arrives_and_exits_with_the_remote_code() throws Exception {
    CountDownLatch firstChunkShown = new CountDownLatch(1);
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.EXEC, (ExecRequest req, io.grpc.stub.StreamObserver<ExecResponse> out) -> {
          out.onNext(ExecResponse.newBuilder().setStdout(ByteString.copyFromUtf8("hello\n")).build());
          try {
            // the rest only comes once the CLI has shown the first chunk: proves it is not buffered
            if (!firstChunkShown.await(10, TimeUnit.SECONDS)) {
              out.onError(Status.ABORTED.withDescription("first chunk never shown").asException());
              return;
            }
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
          out.onNext(ExecResponse.newBuilder().setStderr(ByteString.copyFromUtf8("oops\n")).build());
          out.onNext(ExecResponse.newBuilder().setStdout(ByteString.copyFromUtf8("bye\n")).build());
          out.onNext(ExecResponse.newBuilder()
              .setExit(ExitStatus.newBuilder().setExitCode(7)).build());
          out.onCompleted();
        })
        .start();
    TestCli cli = cli();

    CompletableFuture<TestCli.Result> run = CompletableFuture.supplyAsync(
        () -> cli.run("exec", "sb-1", "--", "sh", "-c", "echo @hello; exit 7"));
    await().atMost(Duration.ofSeconds(10)).until(() -> cli.out().equals("hello\n"));
    firstChunkShown.countDown();
    TestCli.Result r = run.get(10, TimeUnit.SECONDS);

    assertEquals(7, r.exitCode());
    assertEquals("hello\nbye\n", r.out());
    assertEquals("oops\n", r.err());
    ExecRequest sent = (ExecRequest) server.requests.get(0);
    assertEquals("sb-1", sent.getSandboxId());
    assertEquals(List.of("sh", "-c", "echo @hello; exit 7"), sent.getArgvList());
  }

  @Test
  void exec_i_streams_stdin_then_its_end_and_exits_with_the_remote_code() {
    server = new TestSandboxServer()
        .bidiStreaming(SandboxServiceMethods.EXEC_INTERACTIVE, (List<dev.flotilla.api.v1.ExecInteractiveRequest> got) -> {
          StringBuilder in = new StringBuilder();
          for (var m : got) if (m.hasStdin()) in.append(m.getStdin().toStringUtf8());
          return List.of(ExecResponse.newBuilder().setStdout(ByteString.copyFromUtf8(in.toString())).build(),
              ExecResponse.newBuilder().setExit(ExitStatus.newBuilder().setExitCode(3)).build());
        })
        .start();

    TestCli.Result r = cli().stdin("one\ntwo\n").run("exec", "-i", "-e", "A=1", "sb-1", "--", "cat");

    assertEquals(3, r.exitCode(), r.err());
    assertEquals("one\ntwo\n", r.out());
    var start = ((dev.flotilla.api.v1.ExecInteractiveRequest) server.requests.get(0)).getStart();
    assertEquals("sb-1", start.getSandboxId());
    assertEquals(List.of("cat"), start.getArgvList());
    assertEquals(Map.of("A", "1"), start.getEnvMap());
    assertEquals(false, start.getTty());
    var last = (dev.flotilla.api.v1.ExecInteractiveRequest) server.requests.get(server.requests.size() - 1);
    assertTrue(last.getCloseStdin(), "the end of stdin is sent last: " + server.requests);
  }

  @Test
  void exec_it_needs_a_terminal_and_its_flags_go_together() {
    server = new TestSandboxServer().start();

    TestCli.Result noTty = cli().stdin("").run("exec", "-it", "sb-1", "--", "sh");
    assertEquals(ExitCodes.USAGE, noTty.exitCode());
    assertTrue(noTty.err().contains("-t needs a terminal on stdin (the input is not a TTY)"), noTty.err());
    assertEquals(ExitCodes.USAGE, cli().run("exec", "-t", "sb-1", "--", "sh").exitCode());
    assertEquals(ExitCodes.USAGE, cli().run("exec", "-d", "-i", "sb-1", "--", "sh").exitCode());
    assertTrue(server.requests.isEmpty(), "nothing sent: " + server.requests);
  }

  @Test
  void exec_killed_by_a_signal_exits_with_128_plus_the_signal() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.EXEC, (ExecRequest req, io.grpc.stub.StreamObserver<ExecResponse> out) -> {
          out.onNext(ExecResponse.newBuilder()
              .setExit(ExitStatus.newBuilder().setSignal(9)).build());
          out.onCompleted();
        })
        .start();

    TestCli.Result r = cli().run("exec", "-e", "A=1", "-w", "/tmp", "sb-1", "sleep", "100");

    assertEquals(137, r.exitCode());
    ExecRequest sent = (ExecRequest) server.requests.get(0);
    assertEquals(Map.of("A", "1"), sent.getEnvMap());
    assertEquals("/tmp", sent.getWorkingDir());
  }

  @Test
  void exec_that_ends_without_an_exit_status_is_a_failure() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.EXEC, (ExecRequest req, io.grpc.stub.StreamObserver<ExecResponse> out) ->
            out.onCompleted())
        .start();

    TestCli.Result r = cli().run("exec", "sb-1", "--", "true");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("flotilla: the node ended the exec of sb-1 without an exit status\n", r.err());
  }

  @Test
  void exec_on_a_stopped_sandbox_prints_the_nodes_reason() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.EXEC, (ExecRequest req, io.grpc.stub.StreamObserver<ExecResponse> out) ->
            out.onError(Status.FAILED_PRECONDITION
                .withDescription("sandbox sb-1 is STOPPED: start it first").asException()))
        .start();

    TestCli.Result r = cli().run("exec", "sb-1", "--", "true");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("flotilla: sandbox sb-1 is STOPPED: start it first\n", r.err());
  }

  @Test
  void not_found_is_one_line_and_exit_1() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> {
          throw Status.NOT_FOUND.withDescription("no such sandbox").asRuntimeException();
        })
        .start();

    TestCli.Result r = cli().run("get", "sb-123");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("", r.out());
    assertEquals("flotilla: sandbox sb-123 not found\n", r.err());
  }

  @Test
  void invalid_argument_shows_what_to_fix() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.CREATE_SANDBOX, req -> {
          throw Status.INVALID_ARGUMENT.withDescription("--cpus must be between 1 and 8")
              .asRuntimeException();
        })
        .start();

    TestCli.Result r = cli().run("create", "--cpus", "64");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("flotilla: invalid argument: --cpus must be between 1 and 8\n", r.err());
  }

  @Test
  void a_node_that_is_unavailable_exits_3() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.STOP_SANDBOX, req -> {
          throw Status.UNAVAILABLE.withDescription("the sandbox did not answer in 5s")
              .asRuntimeException();
        })
        .start();

    TestCli.Result r = cli().run("stop", "sb-1");

    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode());
    assertEquals("flotilla: unavailable: the sandbox did not answer in 5s (safe to retry)\n",
        r.err());
  }

  @Test
  void no_node_listening_is_one_line_and_exit_3() throws IOException {
    int closedPort;
    try (ServerSocket s = new ServerSocket(0)) {
      closedPort = s.getLocalPort();
    }

    TestCli.Result r = new TestCli(dir).run("ls", "--endpoint", "127.0.0.1:" + closedPort);

    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode());
    assertEquals("flotilla: cannot reach a node at 127.0.0.1:" + closedPort
        + ": connection refused (is `./flotilla node` running?)\n", r.err());
  }

  @Test
  void a_call_without_an_answer_ends_at_the_timeout_with_exit_3() {
    server = new TestSandboxServer().silent(SandboxServiceMethods.GET_SANDBOX).start();

    TestCli.Result r = cli().run("get", "sb-1", "--timeout", "300ms");

    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode());
    assertEquals("flotilla: no answer from the node at " + server.endpoint()
        + " within 300ms (raise --timeout, or retry)\n", r.err());
  }

  @Test
  void timeout_is_a_deadline_on_unary_calls_but_not_on_streams() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> sandbox("sb-1", Phase.RUNNING))
        .streaming(SandboxServiceMethods.EXEC, (ExecRequest req, io.grpc.stub.StreamObserver<ExecResponse> out) -> {
          out.onNext(ExecResponse.newBuilder().setExit(ExitStatus.getDefaultInstance()).build());
          out.onCompleted();
        })
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) -> out.onCompleted())
        .start();

    assertEquals(0, cli().run("get", "sb-1", "--timeout", "5s").exitCode());
    assertEquals(0, cli().run("exec", "sb-1", "--timeout", "5s", "--", "true").exitCode());
    assertEquals(0, cli().run("watch", "sb-1", "--timeout", "5s").exitCode());

    long getDeadlineMs = server.deadlines.get(0).orElseThrow().timeRemaining(TimeUnit.MILLISECONDS);
    assertTrue(getDeadlineMs > 0 && getDeadlineMs <= 5000, "get deadline " + getDeadlineMs + "ms");
    assertEquals(Optional.empty(), server.deadlines.get(1), "exec must not have a deadline");
    assertEquals(Optional.empty(), server.deadlines.get(2), "watch must not have a deadline");
  }

  @Test
  void the_token_is_sent_as_a_bearer_token() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> sandbox("sb-1", Phase.RUNNING))
        .start();

    cli().run("get", "sb-1");                      // FLOTILLA_TOKEN
    cli().run("get", "sb-1", "--token", "flag");   // --token wins over the environment
    cli().run("--token", "before", "get", "sb-1"); // also accepted before the command

    assertEquals(List.of("Bearer t0k", "Bearer flag", "Bearer before"), server.authorizations);
  }

  @Test
  void a_token_file_keeps_the_token_out_of_argv() throws IOException {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> sandbox("sb-1", Phase.RUNNING))
        .start();
    Files.writeString(dir.resolve("flag.token"), "from-flag-file\n");
    Files.writeString(dir.resolve("env.token"), "from-env-file\n");

    cli().run("get", "sb-1", "--token-file", "flag.token");            // over FLOTILLA_TOKEN
    cli().run("get", "sb-1", "--token-file", "flag.token", "--token", "flag"); // --token still wins
    new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint())
        .env(CliContext.ENV_TOKEN_FILE, dir.resolve("env.token").toString()).run("get", "sb-1");
    cli().env(CliContext.ENV_TOKEN_FILE, "env.token").run("get", "sb-1");  // FLOTILLA_TOKEN over FLOTILLA_TOKEN_FILE

    assertEquals(List.of("Bearer from-flag-file", "Bearer flag", "Bearer from-env-file", "Bearer t0k"), server.authorizations);
  }

  @Test
  void without_a_token_the_embedded_nodes_token_file_is_used() throws IOException {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> sandbox("sb-1", Phase.RUNNING))
        .start();
    Files.createDirectories(dir.resolve("data"));
    Files.writeString(dir.resolve("data/default.token"), "from-default-dir\n");
    Files.createDirectories(dir.resolve("elsewhere"));
    Files.writeString(dir.resolve("elsewhere/default.token"), "from-env-dir\n");
    TestCli noToken = new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint());

    assertEquals(0, noToken.run("get", "sb-1").exitCode());
    assertEquals(0, new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint())
        .env(CliContext.ENV_DATA_DIR, "elsewhere").run("get", "sb-1").exitCode());

    assertEquals(List.of("Bearer from-default-dir", "Bearer from-env-dir"), server.authorizations);
  }

  @Test
  void unauthenticated_says_where_a_token_comes_from() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.GET_SANDBOX, req -> {
          throw Status.UNAUTHENTICATED.withDescription("missing bearer token").asRuntimeException();
        })
        .start();

    TestCli.Result r = new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint())
        .run("get", "sb-1");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals(List.of(""), server.authorizations);
    assertEquals("flotilla: not authenticated: missing bearer token (no token: none given with "
        + "--token, --token-file, FLOTILLA_TOKEN or FLOTILLA_TOKEN_FILE, and no " + dir.resolve("data/default.token") + ")\n", r.err());
  }

  @Test
  void ls_follows_pages_sends_filters_and_prints_a_table() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.LIST_SANDBOXES, (ListSandboxesRequest req) ->
            req.getPageToken().isEmpty()
                ? ListSandboxesResponse.newBuilder().addSandboxes(sandbox("sb-1", Phase.RUNNING))
                    .setNextPageToken("p2").build()
                : ListSandboxesResponse.newBuilder()
                    .addSandboxes(sandbox("sb-22", Phase.STOPPED)).build())
        .start();

    TestCli.Result r = cli().run("ls", "--label", "app=web", "--phase", "running,stopped");

    assertEquals(0, r.exitCode(), r.err());
    List<String> lines = r.out().lines().toList();
    assertEquals(3, lines.size(), r.out());
    assertEquals(List.of("ID", "PHASE", "INCARNATION", "NODE", "LABELS", "AGE"),
        List.of(lines.get(0).split("\\s+")));
    List<String> row = List.of(lines.get(1).split("\\s+"));
    assertEquals(List.of("sb-1", "RUNNING", "1", "127.0.0.1:25520", "app=web"), row.subList(0, 5));
    assertTrue(row.get(5).matches("1m3\\ds"), row.get(5)); // created 90s before the call
    assertTrue(lines.get(2).startsWith("sb-22  STOPPED "), lines.get(2));
    assertEquals(lines.get(0).indexOf("PHASE"), lines.get(1).indexOf("RUNNING"));
    ListSandboxesRequest first = (ListSandboxesRequest) server.requests.get(0);
    ListSandboxesRequest second = (ListSandboxesRequest) server.requests.get(1);
    assertEquals(Map.of("app", "web"), first.getLabelSelectorMap());
    assertEquals(List.of(Phase.RUNNING, Phase.STOPPED), first.getPhasesList());
    assertEquals("", first.getPageToken());
    assertEquals("p2", second.getPageToken());
    assertEquals(first.getLabelSelectorMap(), second.getLabelSelectorMap());
  }

  @Test
  void ls_json_is_an_array_of_sandbox_objects() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.LIST_SANDBOXES, req -> ListSandboxesResponse.newBuilder()
            .addSandboxes(sandbox("sb-1", Phase.RUNNING)).build())
        .start();

    TestCli.Result r = cli().run("ls", "-o", "json");

    assertEquals(0, r.exitCode(), r.err());
    var array = com.google.gson.JsonParser.parseString(r.out()).getAsJsonArray();
    assertEquals(1, array.size());
    assertEquals("sb-1", array.get(0).getAsJsonObject().get("id").getAsString());
  }

  @Test
  void lifecycle_commands_print_id_and_phase_and_rm_prints_the_id() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.STOP_SANDBOX, req -> sandbox(req.getId(), Phase.STOPPING))
        .unary(SandboxServiceMethods.START_SANDBOX, req -> sandbox(req.getId(), Phase.CREATING))
        .unary(SandboxServiceMethods.PAUSE_SANDBOX, req -> sandbox(req.getId(), Phase.PAUSED))
        .unary(SandboxServiceMethods.RESUME_SANDBOX, req -> sandbox(req.getId(), Phase.RUNNING))
        .unary(SandboxServiceMethods.DELETE_SANDBOX,
            req -> DeleteSandboxResponse.newBuilder().setId(req.getId()).build())
        .start();

    assertEquals("sb-1 STOPPING\n", cli().run("stop", "sb-1").out());
    assertEquals("sb-1 CREATING\n", cli().run("start", "sb-1").out());
    assertEquals("sb-1 PAUSED\n", cli().run("pause", "sb-1").out());
    assertEquals("sb-1 RUNNING\n", cli().run("resume", "sb-1").out());
    assertEquals("sb-1\n", cli().run("rm", "sb-1").out());
  }

  @Test
  void watch_prints_each_event_as_it_arrives_until_the_stream_ends() throws Exception {
    CountDownLatch firstLineShown = new CountDownLatch(1);
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) -> {
          out.onNext(event("snapshot", sandbox("sb-1", Phase.CREATING)));
          try {
            if (!firstLineShown.await(10, TimeUnit.SECONDS)) {
              out.onError(Status.ABORTED.withDescription("first line never shown").asException());
              return;
            }
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
          out.onNext(event("running", sandbox("sb-1", Phase.RUNNING)));
          out.onNext(event("deleted", sandbox("sb-1", Phase.DELETED).toBuilder()
              .setStatusMessage("deleted by the user").build()));
          out.onCompleted();
        })
        .start();
    TestCli cli = cli();

    CompletableFuture<TestCli.Result> run = CompletableFuture.supplyAsync(
        () -> cli.run("watch", "sb-1"));
    await().atMost(Duration.ofSeconds(10)).until(() -> cli.out().lines().count() == 1);
    firstLineShown.countDown();
    TestCli.Result r = run.get(10, TimeUnit.SECONDS);

    assertEquals(0, r.exitCode(), r.err());
    List<String> lines = r.out().lines().toList();
    assertEquals(3, lines.size(), r.out());
    assertEquals(List.of("2026-11-25T03:00:00.000Z", "snapshot", "CREATING", "1"),
        List.of(lines.get(0).split("\\s+")));
    assertEquals(List.of("2026-11-25T03:00:00.000Z", "deleted", "DELETED", "1", "deleted", "by",
        "the", "user"), List.of(lines.get(2).split("\\s+")));
  }

  @Test
  void watch_into_a_closed_pipe_ends_like_sigpipe_and_cancels_the_stream() throws Exception {
    CountDownLatch cancelled = new CountDownLatch(1);
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.WATCH_SANDBOX, (req, out) -> {
          ((io.grpc.stub.ServerCallStreamObserver<SandboxEvent>) out)
              .setOnCancelHandler(cancelled::countDown);
          out.onNext(event("snapshot", sandbox("sb-1", Phase.RUNNING)));
          // and then nothing: only the client can end this stream
        })
        .start();

    TestCli.Result r = cli().stdoutClosed().run("watch", "sb-1");

    assertEquals(ExitCodes.BROKEN_PIPE, r.exitCode());
    assertEquals("", r.err());
    assertTrue(cancelled.await(10, TimeUnit.SECONDS), "the node never saw the watch cancelled");
  }

  private static SandboxEvent event(String name, Sandbox s) {
    return SandboxEvent.newBuilder().setEvent(name).setSandbox(s)
        .setAt(Timestamp.newBuilder().setSeconds(Instant.parse("2026-11-25T03:00:00Z")
            .getEpochSecond()))
        .build();
  }

  // ------------------------------------------------------------------------------ background processes

  private static dev.flotilla.api.v1.ProcessInfo process(String id, long pid, boolean running, ExitStatus exit, String... argv) {
    var b = dev.flotilla.api.v1.ProcessInfo.newBuilder().setId(id).setPid(pid).setRunning(running).setAttachable(!id.equals("x-1"))
        .setOutputBytes(running ? 120 : 6).addAllArgv(List.of(argv));
    if (exit != null) b.setExit(exit);
    return b.build();
  }

  @Test
  void exec_detached_sends_start_process_and_prints_only_the_process_id() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.START_PROCESS, (dev.flotilla.api.v1.StartProcessRequest req) ->
            process("p-1-0000abcd", 42, true, null, req.getArgvList().toArray(String[]::new)))
        .start();

    TestCli.Result r = cli().run("exec", "-d", "-e", "A=1", "-w", "/tmp", "sb-1", "--", "sh", "-c", "sleep 100");

    assertEquals(ExitCodes.OK, r.exitCode(), r.err());
    assertEquals("p-1-0000abcd\n", r.out());
    var sent = (dev.flotilla.api.v1.StartProcessRequest) server.requests.get(0);
    assertEquals("sb-1", sent.getSandboxId());
    assertEquals(List.of("sh", "-c", "sleep 100"), sent.getArgvList());
    assertEquals(Map.of("A", "1"), sent.getEnvMap());
    assertEquals("/tmp", sent.getWorkingDir());
  }

  @Test
  void ps_prints_a_table_with_state_exit_and_output_and_json_on_request() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.LIST_PROCESSES, (dev.flotilla.api.v1.ListProcessesRequest req) ->
            dev.flotilla.api.v1.ListProcessesResponse.newBuilder()
                .addProcesses(process("main", 2, true, null, "server", "--port", "80"))
                .addProcesses(process("p-1-0000abcd", 42, false, ExitStatus.newBuilder().setSignal(15).build(), "sh", "-c", "count"))
                .addProcesses(process("x-1", 50, false, ExitStatus.newBuilder().setExitCode(3).build(), "false"))
                .build())
        .start();

    TestCli.Result r = cli().run("ps", "sb-1");

    assertEquals(ExitCodes.OK, r.exitCode(), r.err());
    assertEquals(String.join("\n",
        "ID            PID  STATE    EXIT     OUTPUT  AGE  COMMAND",
        "main          2    running  -        120     -    server --port 80",
        "p-1-0000abcd  42   exited   SIGTERM  6       -    sh -c count",
        "x-1           50   exited   3        -       -    false",
        ""), r.out());

    TestCli.Result json = cli().run("ps", "-o", "json", "sb-1");
    assertEquals(ExitCodes.OK, json.exitCode(), json.err());
    assertTrue(json.out().contains("\"id\": \"p-1-0000abcd\",\n    \"pid\": 42,\n    \"state\": \"exited\",\n"
        + "    \"exit_code\": null,\n    \"signal\": 15,"), json.out());
    assertTrue(json.out().contains("\"argv\": [\"server\", \"--port\", \"80\"]"), json.out());
  }

  @Test
  void attach_prints_output_from_the_offset_and_exits_with_the_process_code() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.ATTACH_PROCESS,
            (dev.flotilla.api.v1.AttachProcessRequest req, io.grpc.stub.StreamObserver<dev.flotilla.api.v1.AttachProcessResponse> out) -> {
              out.onNext(dev.flotilla.api.v1.AttachProcessResponse.newBuilder().setOffset(req.getOffset())
                  .setStdout(ByteString.copyFromUtf8("3\n")).build());
              out.onNext(dev.flotilla.api.v1.AttachProcessResponse.newBuilder().setOffset(req.getOffset() + 2)
                  .setStderr(ByteString.copyFromUtf8("oops\n")).build());
              out.onNext(dev.flotilla.api.v1.AttachProcessResponse.newBuilder().setOffset(req.getOffset() + 7)
                  .setExit(ExitStatus.newBuilder().setSignal(15)).build());
              out.onCompleted();
            })
        .start();

    TestCli.Result r = cli().run("attach", "sb-1", "p-1-0000abcd", "--offset", "4");

    assertEquals(128 + 15, r.exitCode(), r.err());
    assertEquals("3\n", r.out());
    assertEquals("oops\n", r.err());
    var sent = (dev.flotilla.api.v1.AttachProcessRequest) server.requests.get(0);
    assertEquals("p-1-0000abcd", sent.getProcessId());
    assertEquals(4, sent.getOffset());
  }

  @Test
  void attach_that_loses_its_stream_says_where_to_read_on_and_that_output_was_dropped() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.ATTACH_PROCESS,
            (dev.flotilla.api.v1.AttachProcessRequest req, io.grpc.stub.StreamObserver<dev.flotilla.api.v1.AttachProcessResponse> out) -> {
              out.onNext(dev.flotilla.api.v1.AttachProcessResponse.newBuilder().setOffset(100)
                  .setStdout(ByteString.copyFromUtf8("late\n")).build());
              out.onError(Status.UNAVAILABLE.withDescription("the node went away").asException());
            })
        .start();

    TestCli.Result r = cli().run("attach", "sb-1", "p-1-0000abcd");

    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode());
    assertEquals("late\n", r.out());
    assertTrue(r.err().startsWith("flotilla: 100 bytes of output were dropped before they were read\n"), r.err());
    assertTrue(r.err().contains("(to read on: flotilla attach sb-1 p-1-0000abcd --offset 105)"), r.err());
  }

  @Test
  void attach_to_an_unknown_process_prints_the_nodes_reason_and_exits_1() {
    server = new TestSandboxServer()
        .streaming(SandboxServiceMethods.ATTACH_PROCESS,
            (dev.flotilla.api.v1.AttachProcessRequest req, io.grpc.stub.StreamObserver<dev.flotilla.api.v1.AttachProcessResponse> out) ->
                out.onError(Status.NOT_FOUND.withDescription("cannot attach to p-9: no process with exec id 'p-9'").asException()))
        .start();

    TestCli.Result r = cli().run("attach", "sb-1", "p-9");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertTrue(r.err().startsWith("flotilla: cannot attach to p-9: no process with exec id 'p-9'"), r.err());
  }

  @Test
  void kill_sends_the_signal_as_given_and_prints_what_was_sent() {
    server = new TestSandboxServer()
        .unary(SandboxServiceMethods.SIGNAL_PROCESS, (dev.flotilla.api.v1.SignalProcessRequest req) ->
            dev.flotilla.api.v1.SignalProcessResponse.newBuilder()
                .setSignal(dev.flotilla.sandbox.protocol.Signals.parse(req.getSignal())).build())
        .start();

    TestCli.Result term = cli().run("kill", "sb-1", "p-1-0000abcd");
    assertEquals(ExitCodes.OK, term.exitCode(), term.err());
    assertEquals("p-1-0000abcd SIGTERM\n", term.out());
    TestCli.Result nine = cli().run("kill", "sb-1", "p-1-0000abcd", "9");
    assertEquals("p-1-0000abcd SIGKILL\n", nine.out());
    assertEquals(List.of("TERM", "9"), server.requests.stream()
        .map(q -> ((dev.flotilla.api.v1.SignalProcessRequest) q).getSignal()).toList());

    TestCli.Result bad = cli().run("kill", "sb-1", "p-1-0000abcd", "NOPE");
    assertEquals(ExitCodes.USAGE, bad.exitCode());
    assertTrue(bad.err().contains("signal 'NOPE' is unknown"), bad.err());
    assertEquals(ExitCodes.USAGE, cli().run("kill", "sb-1", "p-1-0000abcd", "65").exitCode());
    assertEquals(2, server.requests.size(), "nothing sent for a bad signal");
  }
}
