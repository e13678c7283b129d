package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.StopSandboxRequest;
import dev.flotilla.images.TestTools;
import io.grpc.Status;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.pekko.stream.javadsl.Sink;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/** A node on its embedded default (H2 journal) with the real process driver. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NodeOnH2IT extends NodeScenarios {
  Path dataDir;

  @BeforeAll
  void startNode() throws Exception {
    dataDir = TestNode.shortTempDir();
    boot(new TestNode(dataDir, null));
  }

  @AfterAll
  void stopNode() {
    tearDown(node);
  }

  /** The CLI as a user runs it, against this real node: every sandbox command, then the admin ones. */
  @Test
  void theCliEndToEnd() throws Exception {
    Cli created = cli("", "create", "--label", "cli=e2e", "--cpus", "1", "--memory", "256");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    assertTrue(id.matches("[A-Za-z0-9-]+") && created.out().equals(id + "\n"), "create prints the id alone: " + created.out());
    assertEquals(Phase.RUNNING, get(id).getPhase(), "create returned once the sandbox ran");
    Cli listed = cli("", "ls", "--label", "cli=e2e");
    assertEquals(0, listed.code(), listed.err());
    assertTrue(listed.out().lines().anyMatch(l -> l.startsWith(id + " ") && l.contains("RUNNING") && l.contains("cli=e2e")), listed.out());
    Cli json = cli("", "get", id, "-o", "json");
    assertEquals(0, json.code(), json.err());
    assertTrue(json.out().contains("\"id\": \"" + id + "\"") && json.out().contains("\"phase\": \"RUNNING\""), json.out());
    // exec: output byte for byte, the command's exit code, stderr apart
    Cli ran = cli("", "exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3");
    assertEquals(3, ran.code());
    assertEquals("out\n", ran.out());
    assertEquals("err\n", ran.err());
    // resize in place: printed as get prints it, the same incarnation; refusals say what to fix
    Cli resized = cli("", "resize", id, "--memory", "320", "--cpus", "2");
    assertEquals(0, resized.code(), resized.err());
    assertTrue(resized.out().lines().anyMatch(l -> l.matches("Memory:?\\s+320 MiB")), resized.out());
    assertTrue(resized.out().lines().anyMatch(l -> l.matches("vCPUs:?\\s+2")), resized.out());
    assertTrue(resized.out().lines().anyMatch(l -> l.matches("Incarnation:?\\s+1")), resized.out());
    assertEquals(2, cli("", "resize", id).code(), "nothing to change is a usage error");
    Cli tooSmall = cli("", "resize", id, "--memory", "1");
    assertEquals(1, tooSmall.code());
    assertTrue(tooSmall.err().contains("memory must be between"), tooSmall.err());
    assertEquals(id + " PAUSED", firstLine(cli("", "pause", id)));
    assertEquals(id + " RUNNING", firstLine(cli("", "resume", id)));
    assertTrue(firstLine(cli("", "stop", id)).startsWith(id + " STOP"));
    awaitPhase(id, Phase.STOPPED);
    assertTrue(firstLine(cli("", "start", id)).startsWith(id + " "));
    awaitPhase(id, Phase.RUNNING);
    assertEquals("again\n", cli("", "exec", id, "--", "echo", "again").out());
    assertEquals(320, get(id).getSpec().getMemoryMib(), "the next incarnation kept the resize");
    // another tenant's token: the sandbox does not exist for it
    Cli foreign = cliAs(TestNode.OTHER_TOKEN, "", "get", id);
    assertEquals(1, foreign.code());
    assertTrue(foreign.err().contains("not found"), foreign.err());
    // the administration commands: not for a tenant, fine for the admin identity
    Cli denied = cli("", "nodes");
    assertEquals(1, denied.code());
    assertTrue(denied.err().contains("permission denied"), denied.err());
    Cli nodes = cliAs(node.adminToken(), "", "nodes");
    assertEquals(0, nodes.code(), nodes.err());
    assertTrue(nodes.out().startsWith("NODE "), nodes.out());
    assertTrue(nodes.out().lines().anyMatch(l -> l.startsWith(node.node.clusterAddress() + " ") && l.contains("Up")), nodes.out());
    Cli deniedDrain = cli("", "drain", node.node.clusterAddress());
    assertEquals(1, deniedDrain.code());
    assertTrue(deniedDrain.err().contains("permission denied"), deniedDrain.err());
    // rm, then the id is gone
    assertEquals(id, firstLine(cli("", "rm", id)));
    Awaitility.await().atMost(READY).until(() -> cli("", "get", id).code() == 1);
    assertTrue(cli("", "get", id).err().contains("sandbox " + id + " not found"));
    // its history outlives it, oldest first, from the journal
    Cli events = cli("", "events", id);
    assertEquals(0, events.code(), events.err());
    List<String> kinds = events.out().lines().map(l -> l.split("\\s+")[2]).toList();
    assertEquals(List.of("created", "vm-starting", "vm-started", "resized", "paused", "resumed", "stop-requested", "vm-exited",
        "start-requested", "vm-starting", "vm-started", "delete-requested", "vm-exited", "deleted"), kinds, events.out());
    assertTrue(events.out().lines().anyMatch(l -> l.contains("VM started on node " + node.node.clusterAddress())
        && l.contains("as incarnation 2")), events.out());
    Cli paged = cli("", "events", id, "--page-size", "2", "-o", "json");
    assertEquals(0, paged.code(), paged.err());
    assertEquals(14, paged.out().lines().filter(l -> l.contains("\"kind\": ")).count(), paged.out());
    // nobody else's, and nothing for an id that never was (no entity started for it either)
    Cli foreignEvents = cliAs(TestNode.OTHER_TOKEN, "", "events", id);
    assertEquals(1, foreignEvents.code());
    assertTrue(foreignEvents.err().contains("sandbox " + id + " not found"), foreignEvents.err());
    String never = dev.flotilla.sandbox.SandboxIds.random();
    Cli unknown = cli("", "events", never);
    assertEquals(1, unknown.code());
    assertTrue(unknown.err().contains("not found"), unknown.err());
  }

  /**
   * --network egress end to end: the spec reaches the driver (the sandbox has an interface and the
   * node's DNS forwarder), the node's own gRPC port stays out of reach whatever the lists say, a
   * bad entry is refused with what to fix, and none keeps only loopback. (What reaches where is
   * proven against a test-made internet in EgressNetworkTest.)
   */
  @Test
  void egressNetworkingThroughTheCli() {
    Cli bad = cli("", "create", "--network", "egress", "--allow", "10.0.0.1/8");
    assertEquals(1, bad.code());
    assertTrue(bad.err().contains("did you mean 10.0.0.0/8"), bad.err());
    Cli noEgress = cli("", "create", "--allow", "10.0.0.0/8");
    assertEquals(2, noEgress.code(), noEgress.err());

    Cli created = cli("", "create", "--network", "egress", "--allow", "0.0.0.0/0");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    assertTrue(get(id).getSpec().getNetwork().getMode().equals("egress"), get(id).getSpec().toString());
    Cli ifaces = cli("", "exec", id, "--", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /etc/resolv.conf");
    assertEquals(0, ifaces.code(), ifaces.err());
    assertTrue(ifaces.out().lines().anyMatch(l -> !l.equals("lo") && !l.startsWith("nameserver") && !l.isBlank()), ifaces.out());
    assertTrue(ifaces.out().contains("nameserver 169.254.1.1"), ifaces.out());
    // The node's gRPC port by every address of the host: out of reach even with allow 0.0.0.0/0.
    String hosts = hostAddresses();
    Cli reach = cli("", "exec", id, "--", "sh", "-c", "for h in " + hosts + "; do "
        + "nc -w 3 $h " + node.node.grpcPort() + " </dev/null && echo reached $h; done; echo tried " + hosts);
    assertTrue(reach.out().contains("tried") && !reach.out().contains("reached"), reach.out() + reach.err());

    Cli none = cli("", "create");
    String plain = none.out().strip();
    assertEquals("lo\n", cli("", "exec", plain, "--", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").out());
  }

  /** The host's IPv4 addresses, loopback included, space-separated (QemuNodeIT's too). */
  static String hostAddresses() {
    try {
      return java.util.Collections.list(java.net.NetworkInterface.getNetworkInterfaces()).stream()
          .flatMap(i -> java.util.Collections.list(i.getInetAddresses()).stream())
          .filter(a -> a instanceof java.net.Inet4Address && !a.isLinkLocalAddress())
          .map(java.net.InetAddress::getHostAddress).distinct().collect(java.util.stream.Collectors.joining(" "));
    } catch (java.net.SocketException e) {
      throw new AssertionError(e);
    }
  }

  /** create --timeout, set-timeout and the bounds, through the CLI against the real node. */
  @Test
  void timeoutsEndSandboxesAndSetTimeoutMovesTheEnd() {
    Cli created = cli("", "create", "--timeout", "3s");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    Cli got = cli("", "get", id);
    assertTrue(got.out().lines().anyMatch(l -> l.startsWith("Expires:") && l.endsWith("then deleted")), got.out());
    Awaitility.await().atMost(READY).until(() -> cli("", "get", id).code() == 1);
    Cli events = cli("", "events", id);
    assertTrue(events.out().contains(" timed-out ") && events.out().contains(" deleted "), events.out());

    Cli kept = cli("", "create", "--timeout", "1h", "--on-timeout", "stop");
    assertEquals(0, kept.code(), kept.err());
    String id2 = kept.out().strip();
    Cli set = cli("", "set-timeout", id2, "2s");
    assertEquals(0, set.code(), set.err());
    assertTrue(set.out().startsWith(id2 + " expires "), set.out());
    awaitPhase(id2, Phase.STOPPED);
    assertTrue(cli("", "get", id2).out().contains("Expires:      never"), cli("", "get", id2).out());

    Cli tooShort = cli("", "create", "--timeout", "500ms");
    assertEquals(1, tooShort.code());
    assertTrue(tooShort.err().contains("timeout must be between 1s and 30d"), tooShort.err());
    Cli tooLong = cli("", "set-timeout", id2, "40d");
    assertEquals(1, tooLong.code());
    assertTrue(tooLong.err().contains("timeout must be between 1s and 30d"), tooLong.err());
    Cli badAction = cli("", "create", "--timeout", "1m", "--on-timeout", "explode");
    assertEquals(2, badAction.code(), badAction.err());
  }

  /**
   * The README's quickstart, as a user pastes it into {@code bash -e}: every line must succeed in
   * order, with no sleeps (create returns once the sandbox runs). {@code ./flotilla} is the real
   * CLI in its own JVM, pointed at this node.
   */
  @Test
  void theReadmeQuickstartRunsAsAScript() throws Exception {
    String readme = Files.readString(Path.of("..", "README.md"));
    int section = readme.indexOf("## Quickstart");
    int start = readme.indexOf("```sh\n", section) + "```sh\n".length();
    String script = readme.substring(start, readme.indexOf("```", start));
    assertTrue(section >= 0 && script.contains("./flotilla create") && script.contains("./flotilla exec"), script);
    // A line marked (interactive) needs a terminal (exec -it), which a script has not: it is left
    // out here, and execItInATerminal runs the same command in one.
    assertTrue(script.lines().anyMatch(l -> l.contains("exec -it") && l.contains("# (interactive)")), script);
    script = script.lines().filter(l -> !l.contains("# (interactive)")).collect(java.util.stream.Collectors.joining("\n", "", "\n"));
    assertTrue(!script.contains("sleep"), "no sleeps: " + script);
    Path dir = Files.createTempDirectory("quickstart");
    try {
      Path launcher = dir.resolve("flotilla");
      Files.writeString(launcher, "#!/bin/sh\nexec '" + Path.of(System.getProperty("java.home"), "bin", "java")
          + "' -cp '" + System.getProperty("java.class.path") + "' dev.flotilla.cli.Cli \"$@\"\n");
      Files.setPosixFilePermissions(launcher, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
      Files.writeString(dir.resolve("quickstart.sh"), script);
      ProcessBuilder pb = new ProcessBuilder("bash", "-e", "quickstart.sh").directory(dir.toFile()).redirectErrorStream(true);
      pb.environment().put("FLOTILLA_ENDPOINT", "127.0.0.1:" + node.node.grpcPort());
      pb.environment().put("FLOTILLA_TOKEN", token);
      Process p = pb.start();
      String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
      assertTrue(p.waitFor(3, java.util.concurrent.TimeUnit.MINUTES), out);
      assertEquals(0, p.exitValue(), out);
      assertTrue(out.lines().anyMatch(l -> l.startsWith("hello from ")), out);
      assertTrue(out.contains("exit=3\n"), out);
      assertTrue(out.lines().anyMatch(l -> l.contains(" vm-started ")) && out.lines().anyMatch(l -> l.contains(" resumed ")), out);
    } finally {
      TestTools.run(null, "rm", "-rf", dir.toString());
    }
  }

  private static String firstLine(Cli c) {
    assertEquals(0, c.code(), c.err());
    return c.out().lines().findFirst().orElse("");
  }

  @Test
  void sandboxLifecycle() {
    lifecycle();
  }

  @Test
  void watchFollowsChanges() {
    watch();
  }

  Sandbox getAs(String tok, String id) {
    return await(client.getSandbox().addHeader("authorization", "Bearer " + tok).invoke(GetSandboxRequest.newBuilder().setId(id).build()));
  }

  Sandbox createAs(String tok, SandboxSpec spec) {
    return await(client.createSandbox().addHeader("authorization", "Bearer " + tok)
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec).build()));
  }

  @Test
  void tenantsAreIsolated() {
    String id = create(spec(), "").getId();
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> getAs(TestNode.OTHER_TOKEN, id)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> await(client.deleteSandbox()
        .addHeader("authorization", "Bearer " + TestNode.OTHER_TOKEN).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()))));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> await(client.exec()
        .addHeader("authorization", "Bearer " + TestNode.OTHER_TOKEN)
        .invoke(ExecRequest.newBuilder().setSandboxId(id).addArgv("true").build()).runWith(Sink.seq(), clientSystem))));
    var theirs = await(client.listSandboxes().addHeader("authorization", "Bearer " + TestNode.OTHER_TOKEN)
        .invoke(ListSandboxesRequest.getDefaultInstance())).getSandboxesList();
    assertTrue(theirs.stream().noneMatch(s -> s.getId().equals(id)), theirs.toString());
    // The owner still has it, untouched.
    assertEquals(id, get(id).getId());
  }

  /**
   * Every call of SandboxService (and ClusterService) made by another tenant against this tenant's
   * sandbox: NOT_FOUND, exactly as for an id that does not exist (PERMISSION_DENIED for the admin
   * calls); the sandbox is untouched.
   */
  @Test
  void theTenantIsolationMatrixCoversEveryCall() throws Exception {
    String id = create(SandboxSpec.newBuilder(spec()).addAllCommand(List.of("sh", "-c", "echo secret; sleep 600")).build(), "")
        .getId();
    awaitPhase(id, Phase.RUNNING);
    String other = "Bearer " + TestNode.OTHER_TOKEN;
    java.util.Map<String, Runnable> calls = new java.util.LinkedHashMap<>();
    calls.put("GetSandbox", () -> await(client.getSandbox().addHeader("authorization", other)
        .invoke(GetSandboxRequest.newBuilder().setId(id).build())));
    calls.put("StartSandbox", () -> await(client.startSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.StartSandboxRequest.newBuilder().setId(id).build())));
    calls.put("StopSandbox", () -> await(client.stopSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.StopSandboxRequest.newBuilder().setId(id).build())));
    calls.put("PauseSandbox", () -> await(client.pauseSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.PauseSandboxRequest.newBuilder().setId(id).build())));
    calls.put("ResumeSandbox", () -> await(client.resumeSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ResumeSandboxRequest.newBuilder().setId(id).build())));
    calls.put("DeleteSandbox", () -> await(client.deleteSandbox().addHeader("authorization", other)
        .invoke(DeleteSandboxRequest.newBuilder().setId(id).build())));
    calls.put("Exec", () -> await(client.exec().addHeader("authorization", other)
        .invoke(ExecRequest.newBuilder().setSandboxId(id).addArgv("true").build()).runWith(Sink.seq(), clientSystem)));
    calls.put("ExecInteractive", () -> await(client.execInteractive().addHeader("authorization", other)
        .invoke(org.apache.pekko.stream.javadsl.Source.from(List.of(
            dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setStart(dev.flotilla.api.v1.ExecInteractiveStart.newBuilder()
                .setSandboxId(id).addAllArgv(List.of("sh", "-c", "cat > /tmp/planted")).setTty(true)).build(),
            dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setStdin(com.google.protobuf.ByteString.copyFromUtf8("x")).build())))
        .runWith(Sink.seq(), clientSystem)));
    calls.put("WriteFile", () -> await(client.writeFile().addHeader("authorization", other)
        .invoke(org.apache.pekko.stream.javadsl.Source.from(List.of(
            dev.flotilla.api.v1.WriteFileRequest.newBuilder().setHeader(dev.flotilla.api.v1.WriteFileHeader.newBuilder()
                .setSandboxId(id).setPath("/tmp/planted")).build(),
            dev.flotilla.api.v1.WriteFileRequest.newBuilder().setData(com.google.protobuf.ByteString.copyFromUtf8("x")).build())))));
    calls.put("ReadFile", () -> await(client.readFile().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ReadFileRequest.newBuilder().setSandboxId(id).setPath("/etc/hostname").build())
        .runWith(Sink.seq(), clientSystem)));
    calls.put("WatchSandbox", () -> await(client.watchSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.WatchSandboxRequest.newBuilder().setId(id).build()).runWith(Sink.head(), clientSystem)));
    calls.put("ReadLogs", () -> await(client.readLogs().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ReadLogsRequest.newBuilder().setId(id).build()).runWith(Sink.seq(), clientSystem)));
    calls.put("ResizeSandbox", () -> await(client.resizeSandbox().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ResizeSandboxRequest.newBuilder().setId(id).setMemoryMib(512).build())));
    calls.put("ListEvents", () -> await(client.listEvents().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ListEventsRequest.newBuilder().setId(id).build())));
    assertEquals(0, exec(id, "sh", "-c", "echo mine > /tmp/owned").exitCode());
    calls.put("ListDir", () -> await(client.listDir().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ListDirRequest.newBuilder().setSandboxId(id).setPath("/").build())));
    calls.put("Stat", () -> await(client.stat().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.StatRequest.newBuilder().setSandboxId(id).setPath("/tmp/owned").build())));
    calls.put("MakeDir", () -> await(client.makeDir().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.MakeDirRequest.newBuilder().setSandboxId(id).setPath("/tmp/planted").build())));
    calls.put("Remove", () -> await(client.remove().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.RemoveRequest.newBuilder().setSandboxId(id).setPath("/tmp/owned").build())));
    calls.put("Rename", () -> await(client.rename().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.RenameRequest.newBuilder().setSandboxId(id).setFrom("/tmp/owned").setTo("/tmp/planted").build())));
    calls.put("WatchDir", () -> await(client.watchDir().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.WatchDirRequest.newBuilder().setSandboxId(id).setPath("/tmp").build()).runWith(Sink.head(), clientSystem)));

    calls.put("StartProcess", () -> await(client.startProcess().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.StartProcessRequest.newBuilder().setSandboxId(id).addArgv("true").build())));
    calls.put("ListProcesses", () -> await(client.listProcesses().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ListProcessesRequest.newBuilder().setSandboxId(id).build())));
    // "main" is this sandbox's real main process: the id is right, the tenant is not.
    calls.put("AttachProcess", () -> await(client.attachProcess().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.AttachProcessRequest.newBuilder().setSandboxId(id).setProcessId("main").build())
        .runWith(Sink.head(), clientSystem)));
    calls.put("SignalProcess", () -> await(client.signalProcess().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.SignalProcessRequest.newBuilder().setSandboxId(id).setProcessId("main").setSignal("KILL").build())));
    calls.put("PortForward", () -> await(client.portForward().addHeader("authorization", other)
        .invoke(org.apache.pekko.stream.javadsl.Source.single(dev.flotilla.api.v1.PortForwardRequest.newBuilder()
            .setTarget(dev.flotilla.api.v1.PortForwardTarget.newBuilder().setSandboxId(id).setPort(22)).build()))
        .runWith(Sink.seq(), clientSystem)));
    java.util.Map<String, Status.Code> got = new java.util.LinkedHashMap<>();
    for (var c : calls.entrySet()) got.put(c.getKey(), codeOf(c.getValue()));
    java.util.Map<String, Status.Code> expected = new java.util.LinkedHashMap<>();
    for (String name : calls.keySet()) expected.put(name, Status.Code.NOT_FOUND);
    assertEquals(expected, got);
    // Listing shows none of it; a create with the owner's request id makes the other tenant's own sandbox.
    assertTrue(await(client.listSandboxes().addHeader("authorization", other).invoke(ListSandboxesRequest.getDefaultInstance()))
        .getSandboxesList().stream().noneMatch(x -> x.getId().equals(id)));
    // The admin calls of ClusterService are not for tenants.
    var cluster = dev.flotilla.api.v1.ClusterServiceClient.create(org.apache.pekko.grpc.GrpcClientSettings
        .connectToServiceAt("127.0.0.1", node.node.grpcPort(), clientSystem).withTls(false), clientSystem);
    assertEquals(Status.Code.PERMISSION_DENIED, codeOf(() -> await(cluster.listNodes().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.ListNodesRequest.getDefaultInstance()))));
    assertEquals(Status.Code.PERMISSION_DENIED, codeOf(() -> await(cluster.drainNode().addHeader("authorization", other)
        .invoke(dev.flotilla.api.v1.DrainNodeRequest.newBuilder().setAddress("127.0.0.1:1").build()))));
    // ... nor for the default tenant: the administration identity is its own (data/admin.token).
    assertEquals(Status.Code.PERMISSION_DENIED, codeOf(() -> await(cluster.listNodes().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.ListNodesRequest.getDefaultInstance()))));
    assertEquals(1, await(cluster.listNodes().addHeader("authorization", "Bearer " + node.adminToken())
        .invoke(dev.flotilla.api.v1.ListNodesRequest.getDefaultInstance())).getNodesCount());
    // Untouched: still running, its resources, its file not planted, its log the owner's.
    assertEquals(Phase.RUNNING, get(id).getPhase());
    assertEquals(spec().getMemoryMib(), get(id).getSpec().getMemoryMib());
    assertEquals(1, exec(id, "test", "-e", "/tmp/planted").exitCode());
    assertEquals("mine\n", exec(id, "cat", "/tmp/owned").stdout());
    assertEquals("secret\n", logs(id, 0, false).stdout());
    assertTrue(cli("", "ps", id).out().lines().anyMatch(l -> l.startsWith("main ") && l.contains(" running ")), "main untouched");
  }

  /**
   * exec -d, ps, attach (from 0, then again from a later offset), kill and the exit in ps, through
   * the CLI and the API against real sandboxes; process ids of another sandbox, of another tenant
   * or made up are NOT_FOUND.
   */
  @Test
  void backgroundProcessesEndToEnd() {
    Cli created = cli("", "create", "--", "sleep", "600");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    Cli started = cli("", "exec", "-d", id, "--", "sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done; exec sleep 600");
    assertEquals(0, started.code(), started.err());
    String pid = started.out().strip();
    assertTrue(pid.matches("p-1-[0-9a-f]{8}") && started.out().equals(pid + "\n"), "exec -d prints the process id alone: " + started.out());

    // ps: the main process and this one, running, its output growing to all 5 lines.
    Awaitility.await().atMost(READY).untilAsserted(() -> {
      Cli ps = cli("", "ps", id);
      assertEquals(0, ps.code(), ps.err());
      assertTrue(ps.out().lines().anyMatch(l -> l.startsWith("main ") && l.contains(" running ") && l.endsWith("sleep 600")), ps.out());
      assertTrue(ps.out().lines().anyMatch(l -> l.startsWith(pid + " ") && l.matches(".* running +- +10 .*sh -c 'for i in.*")), ps.out());
    });

    // attach from 0, leave once all 5 lines are in (a client that goes away), then from offset 4: the rest.
    var first = attach(id, pid, 0, 10);
    assertEquals("1\n2\n3\n4\n5\n", stdout(first));
    assertEquals(0, first.get(0).getOffset());
    var again = attach(id, pid, 4, 10);
    assertEquals("3\n4\n5\n", stdout(again));
    assertEquals(4, again.get(0).getOffset());

    // kill with TERM: it ends; ps shows how; attach from offset 6 prints the rest and exits like exec (128 + 15).
    Cli killed = cli("", "kill", id, pid, "TERM");
    assertEquals(0, killed.code(), killed.err());
    assertEquals(pid + " SIGTERM\n", killed.out());
    Awaitility.await().atMost(READY).untilAsserted(() -> {
      Cli ps = cli("", "ps", id);
      assertTrue(ps.out().lines().anyMatch(l -> l.startsWith(pid + " ") && l.matches(".* exited +SIGTERM +10 .*")), ps.out());
    });
    Cli attached = cli("", "attach", id, pid, "--offset", "6");
    assertEquals(128 + 15, attached.code(), attached.err());
    assertEquals("4\n5\n", attached.out());
    Cli json = cli("", "ps", id, "-o", "json");
    assertTrue(json.out().contains("\"id\": \"" + pid + "\",") && json.out().contains("\"signal\": 15,"), json.out());
    assertEquals(Phase.RUNNING, get(id).getPhase(), "a background process's end is not the sandbox's");

    // Not this sandbox's process, not this tenant's sandbox, no such process: NOT_FOUND, and nothing sent anywhere.
    String otherSandbox = create(spec(), "").getId();
    awaitPhase(otherSandbox, Phase.RUNNING);
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> signal(bearer(), otherSandbox, pid, "KILL")));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> attach(otherSandbox, pid, 0, 1)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> signal("Bearer " + TestNode.OTHER_TOKEN, id, "main", "KILL")));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> signal(bearer(), id, "p-1-00000000", "TERM")));
    Cli unknown = cli("", "kill", id, "p-1-00000000");
    assertEquals(1, unknown.code());
    assertTrue(unknown.err().contains("p-1-00000000"), unknown.err());
    // Bounds at the edge: a process id or signal that is no such thing, a negative offset.
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> signal(bearer(), id, "../main", "TERM")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> signal(bearer(), id, "main", "NOPE")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> signal(bearer(), id, "main", "65")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> attach(id, "main", -1, 1)));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> await(client.startProcess().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.StartProcessRequest.newBuilder().setSandboxId(id).addArgv("a\0b").build()))));
    assertEquals(Phase.RUNNING, get(id).getPhase(), "main untouched by the refused kills");
    assertEquals(0, cli("", "rm", id).code());
    assertEquals(0, cli("", "rm", otherSandbox).code());
  }

  /** An attach read until {@code bytes} of output have come, then left (cancelled), as a client that goes away. */
  private List<dev.flotilla.api.v1.AttachProcessResponse> attach(String id, String process, long offset, long bytes) {
    long[] seen = {offset};
    return await(client.attachProcess().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.AttachProcessRequest.newBuilder().setSandboxId(id).setProcessId(process).setOffset(offset).build())
        .takeWhile(r -> {
          seen[0] = r.getOffset() + r.getStdout().size() + r.getStderr().size();
          return seen[0] < bytes && !r.hasExit();
        }, true)
        .runWith(Sink.seq(), clientSystem));
  }

  private static String stdout(List<dev.flotilla.api.v1.AttachProcessResponse> chunks) {
    StringBuilder b = new StringBuilder();
    for (var r : chunks) b.append(r.getStdout().toStringUtf8());
    return b.toString();
  }

  private void signal(String auth, String id, String process, String signal) {
    await(client.signalProcess().addHeader("authorization", auth)
        .invoke(dev.flotilla.api.v1.SignalProcessRequest.newBuilder().setSandboxId(id).setProcessId(process).setSignal(signal).build()));
  }

  @Test
  void everyErrorHasItsCodeAndAMessage() {
    var noToken = failure(() -> await(client.getSandbox().invoke(GetSandboxRequest.newBuilder().setId("sb-0000000000000000").build())));
    assertEquals(Status.Code.UNAUTHENTICATED, noToken.getStatus().getCode());
    assertTrue(noToken.getStatus().getDescription().contains("Bearer"));
    assertEquals(Status.Code.UNAUTHENTICATED, codeOf(() -> getAs("not-a-token-at-all", "sb-0000000000000000")));

    var badDriver = failure(() -> create(spec().toBuilder().setDriver("xen").build(), ""));
    assertEquals(Status.Code.INVALID_ARGUMENT, badDriver.getStatus().getCode());
    assertTrue(badDriver.getStatus().getDescription().contains("unknown driver 'xen'"), badDriver.getStatus().getDescription());
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> create(spec().toBuilder().setVcpus(99).build(), "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> create(spec().toBuilder().setMemoryMib(1).build(), "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> create(spec().toBuilder().putLabels("bad key!", "x").build(), "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> create(spec(), "has spaces")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> get("nope")));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> get("sb-0000000000000000")));

    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> exec(id)));
    // refused by the guest, through the VM supervisor: the agent's kind comes through, not INTERNAL
    var missing = failure(() -> await(client.readFile().addHeader("authorization", bearer())
        .invoke(ReadFileRequest.newBuilder().setSandboxId(id).setPath("/no/such/file").build()).runWith(Sink.ignore(), clientSystem)));
    assertEquals(Status.Code.NOT_FOUND, missing.getStatus().getCode(), missing.getStatus().toString());
    await(client.stopSandbox().addHeader("authorization", bearer()).invoke(StopSandboxRequest.newBuilder().setId(id).build()));
    var wrongPhase = failure(() -> await(client.pauseSandbox().addHeader("authorization", bearer())
        .invoke(PauseSandboxRequest.newBuilder().setId(id).build())));
    assertEquals(Status.Code.FAILED_PRECONDITION, wrongPhase.getStatus().getCode());
    assertTrue(wrongPhase.getStatus().getDescription().contains("STOPPED"), wrongPhase.getStatus().getDescription());
  }

  @Test
  void aTenantPastItsConcurrentCallLimitGetsResourceExhaustedAndTheSlotComesBack() {
    String id = createAs(TestNode.SMALL_TOKEN, spec()).getId();
    try {
      // The small tenant may hold one watch at a time on this node.
      var first = client.watchSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
          .invoke(dev.flotilla.api.v1.WatchSandboxRequest.newBuilder().setId(id).build())
          .runWith(org.apache.pekko.stream.javadsl.Sink.queue(), clientSystem);
      assertTrue(await(first.pull()).isPresent(), "the first watch streams its snapshot");
      var refused = failure(() -> await(client.watchSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
          .invoke(dev.flotilla.api.v1.WatchSandboxRequest.newBuilder().setId(id).build()).runWith(
              org.apache.pekko.stream.javadsl.Sink.head(), clientSystem)));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, refused.getStatus().getCode());
      assertTrue(refused.getStatus().getDescription().contains("concurrent-watches = 1"), refused.getStatus().getDescription());
      // Another tenant is not affected.
      String mine = create(spec(), "").getId();
      assertTrue(await(client.watchSandbox().addHeader("authorization", bearer())
          .invoke(dev.flotilla.api.v1.WatchSandboxRequest.newBuilder().setId(mine).build())
          .runWith(org.apache.pekko.stream.javadsl.Sink.head(), clientSystem)).hasSandbox());
      first.cancel();
      org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions().until(() -> await(client.watchSandbox()
          .addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
          .invoke(dev.flotilla.api.v1.WatchSandboxRequest.newBuilder().setId(id).build())
          .runWith(org.apache.pekko.stream.javadsl.Sink.head(), clientSystem)).hasSandbox());
    } finally {
      await(client.deleteSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
          .invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
    }
  }

  @Test
  void quotasAreEnforcedAndNothingIsHalfCreated() {
    var tooBig = failure(() -> createAs(TestNode.SMALL_TOKEN, spec().toBuilder().setVcpus(4).build()));
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, tooBig.getStatus().getCode());
    assertTrue(tooBig.getStatus().getDescription().contains("vCPUs"), tooBig.getStatus().getDescription());
    String first = createAs(TestNode.SMALL_TOKEN, spec()).getId();
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, codeOf(() -> createAs(TestNode.SMALL_TOKEN, spec())));
    List<Sandbox> listed = await(client.listSandboxes().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
        .invoke(ListSandboxesRequest.getDefaultInstance())).getSandboxesList();
    assertEquals(List.of(first), listed.stream().map(Sandbox::getId).toList());
    // Deleting gives the quota back.
    await(client.deleteSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
        .invoke(DeleteSandboxRequest.newBuilder().setId(first).build()));
    String second = createAs(TestNode.SMALL_TOKEN, spec()).getId();
    await(client.deleteSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
        .invoke(DeleteSandboxRequest.newBuilder().setId(second).build()));
  }

  @Test
  void createWithARequestIdIsIdempotent() {
    Sandbox a = create(spec(), "retry-me-1");
    Sandbox b = create(spec(), "retry-me-1");
    assertEquals(a.getId(), b.getId());
    assertEquals(Status.Code.ALREADY_EXISTS, codeOf(() -> create(spec().toBuilder().setVcpus(2).build(), "retry-me-1")));
    long same = await(client.listSandboxes().addHeader("authorization", bearer())
        .invoke(ListSandboxesRequest.newBuilder().putLabelSelector("suite", "e2e").build()))
        .getSandboxesList().stream().filter(s -> s.getId().equals(a.getId())).count();
    assertEquals(1, same);
  }

  @Test
  void listFiltersByLabelAndPhaseAndPages() {
    String x = create(spec().toBuilder().putLabels("list", "x").build(), "").getId();
    String y = create(spec().toBuilder().putLabels("list", "x").build(), "").getId();
    awaitPhase(x, Phase.RUNNING);
    awaitPhase(y, Phase.RUNNING);
    var page1 = await(client.listSandboxes().addHeader("authorization", bearer())
        .invoke(ListSandboxesRequest.newBuilder().putLabelSelector("list", "x").setPageSize(1).build()));
    assertEquals(1, page1.getSandboxesCount());
    assertTrue(!page1.getNextPageToken().isEmpty());
    var page2 = await(client.listSandboxes().addHeader("authorization", bearer())
        .invoke(ListSandboxesRequest.newBuilder().putLabelSelector("list", "x").setPageSize(1).setPageToken(page1.getNextPageToken()).build()));
    assertEquals(1, page2.getSandboxesCount());
    assertEquals(List.of(x, y).stream().sorted().toList(),
        List.of(page1.getSandboxes(0).getId(), page2.getSandboxes(0).getId()));
    var stopped = await(client.listSandboxes().addHeader("authorization", bearer())
        .invoke(ListSandboxesRequest.newBuilder().putLabelSelector("list", "x").addPhases(Phase.STOPPED).build()));
    assertEquals(0, stopped.getSandboxesCount());
  }

  @Test
  void cancellingAnExecStopsTheProcess() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    var started = new java.util.concurrent.CompletableFuture<Void>();
    var kill = client.exec().addHeader("authorization", bearer())
        .invoke(ExecRequest.newBuilder().setSandboxId(id).addArgv("sh").addArgv("-c").addArgv("echo started; exec sleep 300").build())
        .viaMat(org.apache.pekko.stream.KillSwitches.single(), org.apache.pekko.stream.javadsl.Keep.right())
        .to(Sink.foreach(r -> started.complete(null)))
        .run(clientSystem);
    await(started);
    assertEquals("1", exec(id, "sh", "-c", "grep -lx sleep /proc/[0-9]*/comm | wc -l").stdout().trim());
    kill.shutdown(); // the client goes away: the call is cancelled
    org.awaitility.Awaitility.await().atMost(READY).untilAsserted(() ->
        assertEquals("0", exec(id, "sh", "-c", "grep -lx sleep /proc/[0-9]*/comm | wc -l").stdout().trim()));
  }

  @Test
  void largeFilesStreamBothWays() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    byte[] data = new byte[24 * 1024 * 1024];
    new java.util.Random(7).nextBytes(data);
    var chunks = new java.util.ArrayList<dev.flotilla.api.v1.WriteFileRequest>();
    chunks.add(dev.flotilla.api.v1.WriteFileRequest.newBuilder()
        .setHeader(dev.flotilla.api.v1.WriteFileHeader.newBuilder().setSandboxId(id).setPath("/tmp/big.bin")).build());
    for (int off = 0; off < data.length; off += 1024 * 1024) {
      chunks.add(dev.flotilla.api.v1.WriteFileRequest.newBuilder()
          .setData(com.google.protobuf.ByteString.copyFrom(data, off, 1024 * 1024)).build());
    }
    assertEquals(data.length, await(client.writeFile().addHeader("authorization", bearer())
        .invoke(org.apache.pekko.stream.javadsl.Source.from(chunks))).getSize());
    var digest = exec(id, "sha256sum", "/tmp/big.bin").stdout().split(" ")[0];
    assertEquals(sha256(data), digest);
  }

  // ------------------------------------------------------------------------------ file system

  dev.flotilla.api.v1.ListDirResponse listDir(String id, String path, int depth, int pageSize, String token) {
    return await(client.listDir().addHeader("authorization", bearer()).invoke(dev.flotilla.api.v1.ListDirRequest.newBuilder()
        .setSandboxId(id).setPath(path).setDepth(depth).setPageSize(pageSize).setPageToken(token).build()));
  }

  List<String> listed(String id, String path, int depth) {
    return listDir(id, path, depth, 0, "").getEntriesList().stream().map(dev.flotilla.api.v1.FileInfo::getPath).toList();
  }

  dev.flotilla.api.v1.FileInfo stat(String id, String path, boolean follow) {
    return await(client.stat().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.StatRequest.newBuilder().setSandboxId(id).setPath(path).setFollowLinks(follow).build()));
  }

  dev.flotilla.api.v1.FileInfo makeDir(String id, String path, boolean parents) {
    return await(client.makeDir().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.MakeDirRequest.newBuilder().setSandboxId(id).setPath(path).setParents(parents).build()));
  }

  long remove(String id, String path, boolean recursive) {
    return await(client.remove().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.RemoveRequest.newBuilder().setSandboxId(id).setPath(path).setRecursive(recursive).build()))
        .getRemoved();
  }

  void rename(String id, String from, String to, boolean overwrite) {
    await(client.rename().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.RenameRequest.newBuilder().setSandboxId(id).setFrom(from).setTo(to).setOverwrite(overwrite).build()));
  }

  String readFile(String id, String path) {
    var back = new java.io.ByteArrayOutputStream();
    await(client.readFile().addHeader("authorization", bearer())
        .invoke(ReadFileRequest.newBuilder().setSandboxId(id).setPath(path).build())
        .runForeach(c -> back.writeBytes(c.getData().toByteArray()), clientSystem));
    return back.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  long writeFile(String id, String path, String text) {
    return await(client.writeFile().addHeader("authorization", bearer()).invoke(org.apache.pekko.stream.javadsl.Source.from(List.of(
        dev.flotilla.api.v1.WriteFileRequest.newBuilder().setHeader(dev.flotilla.api.v1.WriteFileHeader.newBuilder()
            .setSandboxId(id).setPath(path)).build(),
        dev.flotilla.api.v1.WriteFileRequest.newBuilder().setData(com.google.protobuf.ByteString.copyFromUtf8(text)).build())))).getSize();
  }

  /** ListDir to a depth and paged, Stat of files and links, MakeDir, Rename, Remove, with the guest's error codes. */
  @Test
  void theFileSystemCalls() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    var made = makeDir(id, "/tmp/fs/a/b", true);
    assertEquals(dev.flotilla.api.v1.FileType.FILE_TYPE_DIR, made.getType());
    assertEquals("/tmp/fs/a/b", made.getPath());
    assertEquals(Status.Code.ALREADY_EXISTS, codeOf(() -> makeDir(id, "/tmp/fs/a", false)));
    assertEquals(0, exec(id, "sh", "-c", "echo hello > /tmp/fs/a/b/f.txt && ln -s b/f.txt /tmp/fs/a/link").exitCode());
    // depth first, each directory's entries by name, to the depth asked
    assertEquals(List.of("a"), listed(id, "/tmp/fs", 1));
    assertEquals(List.of("a", "a/b", "a/link"), listed(id, "/tmp/fs", 2));
    assertEquals(List.of("a", "a/b", "a/b/f.txt", "a/link"), listed(id, "/tmp/fs", 3));
    // paged: one entry a page, each page's token asks for the next
    List<String> paged = new java.util.ArrayList<>();
    String token = "";
    do {
      var page = listDir(id, "/tmp/fs", 3, 1, token);
      assertTrue(page.getEntriesCount() <= 1, page.toString());
      page.getEntriesList().forEach(e -> paged.add(e.getPath()));
      token = page.getNextPageToken();
    } while (!token.isEmpty());
    assertEquals(List.of("a", "a/b", "a/b/f.txt", "a/link"), paged);
    // stat: a file, a link itself, a link followed (inside the root)
    var f = stat(id, "/tmp/fs/a/b/f.txt", false);
    assertEquals(dev.flotilla.api.v1.FileType.FILE_TYPE_FILE, f.getType());
    assertEquals(6, f.getSize());
    assertTrue(f.getModified().getSeconds() > 0);
    var link = stat(id, "/tmp/fs/a/link", false);
    assertEquals(dev.flotilla.api.v1.FileType.FILE_TYPE_SYMLINK, link.getType());
    assertEquals("b/f.txt", link.getSymlinkTarget());
    assertEquals(6, stat(id, "/tmp/fs/a/link", true).getSize());
    var missing = failure(() -> stat(id, "/tmp/fs/nope", false));
    assertEquals(Status.Code.NOT_FOUND, missing.getStatus().getCode());
    assertTrue(missing.getStatus().getDescription().contains("/tmp/fs/nope"), missing.getStatus().getDescription());
    // rename: refuses to replace unless asked
    assertEquals(0, exec(id, "sh", "-c", "echo other > /tmp/fs/g.txt").exitCode());
    assertEquals(Status.Code.ALREADY_EXISTS, codeOf(() -> rename(id, "/tmp/fs/a/b/f.txt", "/tmp/fs/g.txt", false)));
    rename(id, "/tmp/fs/a/b/f.txt", "/tmp/fs/g.txt", true);
    assertEquals("hello\n", exec(id, "cat", "/tmp/fs/g.txt").stdout());
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> rename(id, "/tmp/fs/a/b/f.txt", "/tmp/fs/h.txt", false)));
    // remove: a non-empty directory only recursively; a link itself, never its target
    assertEquals(1, remove(id, "/tmp/fs/a/link", false));
    assertEquals(0, exec(id, "test", "-f", "/tmp/fs/g.txt").exitCode());
    var notEmpty = failure(() -> remove(id, "/tmp/fs/a", false));
    assertEquals(Status.Code.FAILED_PRECONDITION, notEmpty.getStatus().getCode());
    assertTrue(notEmpty.getStatus().getDescription().contains("not empty"), notEmpty.getStatus().getDescription());
    assertEquals(2, remove(id, "/tmp/fs/a", true));
    assertEquals(List.of("g.txt"), listed(id, "/tmp/fs", 16));
    // bounds at the edge: nothing reaches the guest
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> listDir(id, "tmp", 1, 0, "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> listDir(id, "/tmp", 17, 0, "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> listDir(id, "/tmp", 1, 1001, "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> listDir(id, "/tmp", 1, 0, "x".repeat(5000))));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stat(id, "/" + "x".repeat(5000), false)));
    assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> rename(id, "/tmp/fs/g.txt", "relative", false)));
    // a paused sandbox refuses them until resumed; an unknown one starts nothing
    await(client.pauseSandbox().addHeader("authorization", bearer()).invoke(PauseSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, codeOf(() -> stat(id, "/tmp", false)));
    await(client.resumeSandbox().addHeader("authorization", bearer()).invoke(ResumeSandboxRequest.newBuilder().setId(id).build()));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> stat(dev.flotilla.sandbox.SandboxIds.random(), "/tmp", false)));
  }

  /** A watch sees files created, modified and deleted, and ends when its directory goes. */
  @Test
  void aWatchSeesChangesAsTheyHappen() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    makeDir(id, "/tmp/w", false);
    var seen = new java.util.concurrent.ConcurrentLinkedQueue<dev.flotilla.api.v1.WatchDirResponse>();
    var done = client.watchDir().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.WatchDirRequest.newBuilder().setSandboxId(id).setPath("/tmp/w").build())
        .runForeach(seen::add, clientSystem);
    Awaitility.await().atMost(READY).until(() -> !seen.isEmpty());
    var started = seen.peek();
    assertTrue(started.hasStarted(), started.toString());
    assertEquals("/tmp/w", started.getStarted().getPath());
    assertEquals(0, exec(id, "sh", "-c", "echo a > /tmp/w/f").exitCode());
    Awaitility.await().atMost(READY).until(() -> events(seen).contains("FILE_CREATED f"));
    assertEquals(0, exec(id, "sh", "-c", "echo b >> /tmp/w/f").exitCode());
    Awaitility.await().atMost(READY).until(() -> events(seen).contains("FILE_MODIFIED f"));
    assertEquals(0, exec(id, "rm", "/tmp/w/f").exitCode());
    Awaitility.await().atMost(READY).until(() -> events(seen).contains("FILE_DELETED f"));
    assertEquals(1, remove(id, "/tmp/w", true));
    await(done); // the directory went: the stream ends
  }

  static List<String> events(java.util.Collection<dev.flotilla.api.v1.WatchDirResponse> seen) {
    return seen.stream().filter(dev.flotilla.api.v1.WatchDirResponse::hasEvent)
        .map(r -> r.getEvent().getKind() + " " + r.getEvent().getPath()).toList();
  }

  /**
   * No call leads out of the sandbox's root: links planted in the sandbox to a host directory
   * (outside its root), through /proc/1/root, and up with .. are resolved inside the root. The
   * host file stays unread and untouched.
   */
  @Test
  void noFileCallLeadsOutOfTheSandbox() throws Exception {
    Path outside = Files.createTempDirectory("flotilla-outside");
    Path secret = outside.resolve("secret.txt");
    Files.writeString(secret, "host secret\n");
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    try {
      assertEquals(0, exec(id, "sh", "-c", "ln -s " + outside + " /host-outside && ln -s /proc/1/root" + outside + " /x"
          + " && ln -s ../../../../../../../.." + outside + " /up").exitCode());
      for (String link : List.of("/host-outside", "/x", "/up")) {
        String file = link + "/secret.txt";
        java.util.Set<Status.Code> refusals = java.util.Set.of(Status.Code.NOT_FOUND, Status.Code.FAILED_PRECONDITION);
        assertTrue(refusals.contains(codeOf(() -> readFile(id, file))), file);
        assertTrue(refusals.contains(codeOf(() -> stat(id, file, true))), file);
        assertTrue(refusals.contains(codeOf(() -> listed(id, link, 1))), link);
        // A write through it lands inside the sandbox's root (the link's text read as a path in
        // the root, parents made as WriteFile makes them), as do a mkdir, a rename and a remove.
        boolean written;
        try {
          writeFile(id, file, "overwritten");
          written = true;
        } catch (io.grpc.StatusRuntimeException refused) {
          written = false;
        }
        if (written) assertEquals("overwritten", exec(id, "cat", outside + "/secret.txt").stdout(), file);
        for (Runnable call : List.<Runnable>of(() -> makeDir(id, link + "/planted", false),
            () -> rename(id, file, "/tmp/stolen", true), () -> remove(id, file, false))) {
          try {
            call.run();
          } catch (io.grpc.StatusRuntimeException refused) {
            // refused or done inside the root: the host file is checked below
          }
        }
        assertEquals(0, exec(id, "rm", "-rf", outside.toString(), "/tmp/stolen").exitCode());
        // the link itself: described, removable, never its target
        assertEquals(dev.flotilla.api.v1.FileType.FILE_TYPE_SYMLINK, stat(id, link, false).getType());
        assertEquals(1, remove(id, link, false));
      }
      assertEquals("host secret\n", Files.readString(secret));
      try (var left = Files.list(outside)) {
        assertEquals(List.of(secret), left.toList());
      }
    } finally {
      Files.deleteIfExists(secret);
      Files.deleteIfExists(outside);
    }
  }

  /** The file system commands and cp as a user runs them against this node. */
  @Test
  void theFileSystemCli() throws Exception {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    Cli mkdir = cli("", "fs", "mkdir", id, "-p", "/tmp/c/a/b", "/tmp/c/d");
    assertEquals(0, mkdir.code(), mkdir.err());
    assertEquals("", mkdir.out());
    // cp into the sandbox and back: several MiB, byte for byte
    byte[] data = new byte[5 * 1024 * 1024 + 3];
    new java.util.Random(11).nextBytes(data);
    Path local = dataDir.resolve("cp-src.bin");
    Files.write(local, data);
    Cli up = cli("", "cp", local.toString(), id + ":/tmp/c/a/b/");
    assertEquals(0, up.code(), up.err());
    assertEquals("", up.err(), "no progress when stderr is not a terminal");
    assertEquals(sha256(data), exec(id, "sha256sum", "/tmp/c/a/b/cp-src.bin").stdout().split(" ")[0]);
    Path back = dataDir.resolve("cp-back.bin");
    Cli down = cli("", "cp", id + ":/tmp/c/a/b/cp-src.bin", back.toString());
    assertEquals(0, down.code(), down.err());
    org.junit.jupiter.api.Assertions.assertArrayEquals(data, Files.readAllBytes(back));
    try (var left = Files.list(dataDir)) {
      assertTrue(left.noneMatch(p -> p.getFileName().toString().endsWith(".flotilla-part")), "no temporary file left");
    }
    Cli toStdout = cli("", "cp", id + ":/tmp/c/a/b/cp-src.bin", "-");
    assertEquals(0, toStdout.code(), toStdout.err());
    Cli fromStdin = cli("piped\n", "cp", "-", id + ":/tmp/c/d/in.txt");
    assertEquals(0, fromStdin.code(), fromStdin.err());
    assertEquals("piped\n", exec(id, "cat", "/tmp/c/d/in.txt").stdout());
    Cli missing = cli("", "cp", id + ":/tmp/c/nope", back.toString());
    assertEquals(1, missing.code());
    assertTrue(missing.err().contains("/tmp/c/nope") && !missing.err().contains("sandbox " + id), missing.err());
    assertArrayEquals(data, Files.readAllBytes(back), "a failed copy leaves the old file");
    // ls to a depth, long lines, JSON
    Cli ls = cli("", "fs", "ls", id, "/tmp/c", "-R");
    assertEquals(0, ls.code(), ls.err());
    assertEquals("a/\na/b/\na/b/cp-src.bin\nd/\nd/in.txt\n", ls.out());
    assertEquals("a/\nd/\n", cli("", "fs", "ls", id, "/tmp/c").out());
    assertEquals("a/\na/b/\nd/\nd/in.txt\n", cli("", "fs", "ls", id, "/tmp/c", "--depth", "2").out());
    Cli paged = cli("", "fs", "ls", id, "/tmp/c", "-R", "--page-size", "2", "-o", "json");
    assertEquals(0, paged.code(), paged.err());
    assertEquals(5, paged.out().lines().filter(l -> l.contains("\"path\": ")).count(), paged.out());
    assertTrue(paged.out().contains("\"path\": \"a/b/cp-src.bin\", \"type\": \"file\", \"size\": " + data.length), paged.out());
    Cli stat = cli("", "fs", "stat", id, "/tmp/c/a/b/cp-src.bin");
    assertEquals(0, stat.code(), stat.err());
    assertTrue(stat.out().startsWith("-rw-r--r-- ") && stat.out().contains(" " + data.length + " ")
        && stat.out().endsWith(" /tmp/c/a/b/cp-src.bin\n"), stat.out());
    // mv, rm: one refused path does not stop the others, and the exit code says so
    assertEquals(0, cli("", "fs", "mv", id, "/tmp/c/d/in.txt", "/tmp/c/moved.txt").code());
    assertEquals("a/\nd/\nmoved.txt\n", cli("", "fs", "ls", id, "/tmp/c").out());
    Cli rm = cli("", "fs", "rm", id, "/tmp/c/nope", "/tmp/c/moved.txt");
    assertEquals(1, rm.code());
    assertTrue(rm.err().contains("/tmp/c/nope"), rm.err());
    assertEquals(1, cli("", "fs", "rm", id, "/tmp/c/a").code(), "a non-empty directory needs -r");
    assertEquals(0, cli("", "fs", "rm", id, "-r", "/tmp/c/a").code());
    assertEquals("d/\n", cli("", "fs", "ls", id, "/tmp/c").out());
    assertEquals(2, cli("", "fs", "ls", id, "tmp").code(), "a relative path is a usage error");
    assertEquals(2, cli("", "cp", "a", "b").code(), "cp needs one side in a sandbox");
    // watch: runs until its directory goes
    var watched = new java.util.concurrent.CompletableFuture<Cli>();
    var outBuf = new java.io.ByteArrayOutputStream();
    var errBuf = new java.io.ByteArrayOutputStream();
    Thread t = new Thread(() -> {
      var ctx = new dev.flotilla.cli.CliContext(java.util.Map.of("FLOTILLA_ENDPOINT", "127.0.0.1:" + node.node.grpcPort(),
          "FLOTILLA_TOKEN", token), node.dataDir, new java.io.PrintStream(outBuf, true), new java.io.PrintStream(errBuf, true));
      int code = new dev.flotilla.cli.Cli(ctx).run("fs", "watch", id, "/tmp/c/d");
      watched.complete(new Cli(code, outBuf.toString(), errBuf.toString()));
    }, "cli-watch");
    t.start();
    Awaitility.await().atMost(READY).until(() -> errBuf.toString().contains("watching /tmp/c/d"));
    assertEquals(0, exec(id, "sh", "-c", "echo x > /tmp/c/d/new && rm /tmp/c/d/new").exitCode());
    Awaitility.await().atMost(READY).until(() -> outBuf.toString().contains("deleted new\n"));
    assertEquals(0, cli("", "fs", "rm", id, "-r", "/tmp/c/d").code());
    Cli w = watched.get(CALL.toSeconds(), java.util.concurrent.TimeUnit.SECONDS);
    assertEquals(0, w.code(), w.err());
    assertTrue(w.out().startsWith("created new\n"), w.out());
  }

  /**
   * {@code flotilla port-forward} as a user runs it (its own JVM, real signals) against this node:
   * an HTTP server in the sandbox reached through it; 4 MiB each way through a server that reads to
   * the client's half-close, with digests; a refused port reported while the forwarder goes on; a
   * closed client leaving no connection in the sandbox; SIGTERM ends it with 0, the sandbox's
   * deletion with 1 and the reason.
   */
  @Test
  void portForwardThroughTheCli() throws Exception {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    assertEquals(0, exec(id, "sh", "-c", "mkdir -p /tmp/www && echo 'hello through the tunnel' > /tmp/www/index.html"
        + " && head -c 4194304 /dev/urandom > /tmp/down").exitCode());
    String downDigest = exec(id, "sh", "-c", "sha256sum /tmp/down").stdout().substring(0, 64);
    assertEquals(0, cli("", "exec", "-d", id, "--", "/.fl/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/tmp/www").code());
    assertEquals(0, cli("", "exec", "-d", id, "--", "nc", "-l", "-p", "9001", "-e", "sh", "-c",
        "cat > /tmp/up; sha256sum /tmp/up | cut -c1-64; cat /tmp/down").code());
    assertEquals(0, cli("", "exec", "-d", id, "--", "nc", "-l", "-p", "9002", "-e", "sh", "-c", "cat > /dev/null").code());
    Awaitility.await().atMost(READY).until(() -> listening(id, 8080) && listening(id, 9001) && listening(id, 9002));

    PortForwarder fwd = PortForwarder.start(this, id, "0:8080", ":9001", "0:9002", "0:9009");
    PortForwarder untilDeleted = PortForwarder.start(this, id, "0:8080");
    try {
      assertEquals(4, fwd.locals.size(), fwd.output());
      // HTTP through the tunnel
      var http = java.net.http.HttpClient.newHttpClient();
      var get = java.net.http.HttpRequest.newBuilder(java.net.URI.create("http://127.0.0.1:" + fwd.locals.get(0) + "/index.html")).build();
      var page = http.send(get, java.net.http.HttpResponse.BodyHandlers.ofString());
      assertEquals(200, page.statusCode());
      assertEquals("hello through the tunnel\n", page.body());
      // 4 MiB up to the server's end (our half-close), its digest and 4 MiB down to the server's close
      byte[] up = new byte[4 << 20];
      new java.util.Random(11).nextBytes(up);
      try (java.net.Socket s = new java.net.Socket("127.0.0.1", fwd.locals.get(1))) {
        var reading = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
          try {
            return s.getInputStream().readAllBytes();
          } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        });
        s.getOutputStream().write(up);
        s.shutdownOutput();
        byte[] back = reading.get(CALL.toSeconds(), java.util.concurrent.TimeUnit.SECONDS);
        assertEquals(sha256(up) + "\n", new String(back, 0, 65, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(downDigest, sha256(java.util.Arrays.copyOfRange(back, 65, back.length)));
      }
      // a client that goes away leaves no connection behind in the sandbox
      try (java.net.Socket s = new java.net.Socket("127.0.0.1", fwd.locals.get(2))) {
        s.getOutputStream().write("x".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        Awaitility.await().atMost(READY).until(() -> established(id, 9002) == 1);
      }
      Awaitility.await().atMost(READY).until(() -> established(id, 9002) == 0);
      // nothing listens on 9009: that connection is closed and the reason printed; the forwarder goes on
      try (java.net.Socket s = new java.net.Socket("127.0.0.1", fwd.locals.get(3))) {
        s.setSoTimeout((int) CALL.toMillis());
        assertEquals(-1, s.getInputStream().read());
      } catch (java.net.SocketException reset) {
        // closed with a reset: as good
      }
      Awaitility.await().atMost(READY).until(() -> fwd.err().contains("nothing listens on port 9009 in the sandbox"));
      assertEquals(200, http.send(get, java.net.http.HttpResponse.BodyHandlers.ofString()).statusCode());
      // SIGTERM: listeners and calls closed, exit 0
      fwd.process.destroy();
      assertTrue(fwd.process.waitFor(CALL.toSeconds(), java.util.concurrent.TimeUnit.SECONDS));
      assertEquals(0, fwd.process.exitValue(), fwd.output());
      org.junit.jupiter.api.Assertions.assertThrows(java.net.ConnectException.class,
          () -> new java.net.Socket("127.0.0.1", fwd.locals.get(0)).close(), "nothing listens any more");
      // the sandbox deleted: the other forwarder ends with 1 and says why
      assertEquals(0, cli("", "rm", id).code());
      assertTrue(untilDeleted.process.waitFor(CALL.toSeconds(), java.util.concurrent.TimeUnit.SECONDS), untilDeleted.output());
      assertEquals(1, untilDeleted.process.exitValue(), untilDeleted.output());
      assertTrue(untilDeleted.err().contains("sandbox " + id + " was deleted"), untilDeleted.output());
    } finally {
      fwd.process.destroyForcibly();
      untilDeleted.process.destroyForcibly();
    }
  }

  /** A {@code flotilla port-forward} process, once it has printed its Forwarding lines. */
  record PortForwarder(Process process, List<Integer> locals, java.io.ByteArrayOutputStream errBuf, StringBuilder outBuf) {
    static PortForwarder start(NodeScenarios test, String id, String... mappings) throws Exception {
      List<String> cmd = new java.util.ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "-cp", System.getProperty("java.class.path"), "dev.flotilla.cli.Cli", "port-forward", id));
      cmd.addAll(List.of(mappings));
      ProcessBuilder pb = new ProcessBuilder(cmd);
      pb.environment().put("FLOTILLA_ENDPOINT", "127.0.0.1:" + test.node.node.grpcPort());
      pb.environment().put("FLOTILLA_TOKEN", test.token);
      Process p = pb.start();
      var err = new java.io.ByteArrayOutputStream();
      Thread drain = new Thread(() -> {
        try {
          p.getErrorStream().transferTo(err);
        } catch (java.io.IOException ignored) {
          // the process ended
        }
      }, "port-forward-stderr");
      drain.setDaemon(true);
      drain.start();
      var out = new StringBuilder();
      var reader = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream(), java.nio.charset.StandardCharsets.UTF_8));
      List<Integer> locals = new java.util.ArrayList<>();
      for (String m : mappings) {
        String line = reader.readLine();
        if (line == null) break;
        out.append(line).append('\n');
        var match = java.util.regex.Pattern.compile("Forwarding from 127\\.0\\.0\\.1:(\\d+) -> (\\d+)").matcher(line);
        assertTrue(match.matches(), line);
        assertEquals(m.substring(m.indexOf(':') + 1), match.group(2));
        locals.add(Integer.parseInt(match.group(1)));
      }
      return new PortForwarder(p, locals, err, out);
    }

    String err() {
      synchronized (errBuf) {
        return errBuf.toString(java.nio.charset.StandardCharsets.UTF_8);
      }
    }

    String output() {
      return outBuf + err();
    }
  }

  private boolean listening(String id, int port) {
    String hex = String.format(":%04X ", port);
    return exec(id, "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").stdout().lines()
        .anyMatch(l -> l.contains(hex) && l.trim().split("\\s+")[3].equals("0A"));
  }

  private long established(String id, int port) {
    String hex = String.format(":%04X", port);
    return exec(id, "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").stdout().lines()
        .map(l -> l.trim().split("\\s+"))
        .filter(f -> f.length > 3 && f[1].endsWith(hex) && f[3].equals("01"))
        .count();
  }

  static String sha256(byte[] data) {
    try {
      return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(data));
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  @Test
  void aRestartedNodeReattachesToRunningSandboxes() throws Exception {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    // A process that only the same VM can still have after the restart.
    String pid = exec(id, "sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!").stdout().trim();
    // And one that is PAUSED: its frozen VM must be re-attached frozen, not handshaken into a timeout and killed.
    String pausedId = create(spec(), "").getId();
    awaitPhase(pausedId, Phase.RUNNING);
    String pausedPid = exec(pausedId, "sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!").stdout().trim();
    await(client.pauseSandbox().addHeader("authorization", bearer()).invoke(PauseSandboxRequest.newBuilder().setId(pausedId).build()));
    node.close(); // the node stops; the sandbox keeps running
    node.start();
    client = node.client(clientSystem);
    // The journal says RUNNING at once; the re-attach to the live VM is recorded when it is done.
    org.awaitility.Awaitility.await().atMost(READY).until(() -> get(id).getStatusMessage().contains("re-attached"));
    Sandbox back = get(id);
    assertEquals(Phase.RUNNING, back.getPhase());
    assertEquals(1, back.getIncarnation(), back.toString());
    assertEquals(0, exec(id, "test", "-d", "/proc/" + pid).exitCode(), "the sandbox's processes survived the node restart");

    org.awaitility.Awaitility.await().atMost(READY).until(() -> get(pausedId).getStatusMessage().contains("re-attached"));
    Sandbox paused = get(pausedId);
    assertEquals(Phase.PAUSED, paused.getPhase(), paused.toString());
    assertEquals(1, paused.getIncarnation(), paused.toString());
    assertEquals(Status.Code.FAILED_PRECONDITION, codeOf(() -> exec(pausedId, "true")));
    Sandbox resumed = await(client.resumeSandbox().addHeader("authorization", bearer())
        .invoke(ResumeSandboxRequest.newBuilder().setId(pausedId).build()));
    assertEquals(Phase.RUNNING, resumed.getPhase());
    // the agent is connected right after the thaw; until then an exec is UNAVAILABLE (retryable)
    org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions()
        .until(() -> exec(pausedId, "test", "-d", "/proc/" + pausedPid).exitCode() == 0);
    assertEquals(1, get(pausedId).getIncarnation(), "the same VM, thawed");
  }

  // ------------------------------------------------------------------------------ interactive exec

  private static dev.flotilla.api.v1.ExecInteractiveRequest startOf(String id, boolean tty, String... argv) {
    return dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setStart(dev.flotilla.api.v1.ExecInteractiveStart.newBuilder()
        .setSandboxId(id).addAllArgv(List.of(argv)).setTty(tty)).build();
  }

  private List<dev.flotilla.api.v1.ExecResponse> execInteractive(List<dev.flotilla.api.v1.ExecInteractiveRequest> requests) {
    return await(client.execInteractive().addHeader("authorization", bearer())
        .invoke(org.apache.pekko.stream.javadsl.Source.from(requests)).runWith(Sink.seq(), clientSystem));
  }

  /**
   * ExecInteractive through the API: stdin over a pipe (the end of the client's stream ends it), a
   * terminal's size, and every malformed message refused INVALID_ARGUMENT with what to fix; the
   * CLI's -i pipes its stdin, -t without a terminal is refused before anything is sent.
   */
  @Test
  void interactiveExecThroughTheApiAndExecIPipesStdin() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    var stdin = dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setStdin(com.google.protobuf.ByteString.copyFromUtf8("hi\n")).build();
    List<dev.flotilla.api.v1.ExecResponse> piped = execInteractive(List.of(startOf(id, false, "sh", "-c", "cat; exit 4"), stdin, stdin));
    assertEquals("hi\nhi\n", piped.stream().filter(r -> r.hasStdout()).map(r -> r.getStdout().toStringUtf8())
        .collect(java.util.stream.Collectors.joining()));
    assertEquals(4, piped.get(piped.size() - 1).getExit().getExitCode());
    var sized = dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setStart(dev.flotilla.api.v1.ExecInteractiveStart.newBuilder()
        .setSandboxId(id).addAllArgv(List.of("stty", "size")).setTty(true).setRows(33).setCols(111)).build();
    List<dev.flotilla.api.v1.ExecResponse> tty = await(client.execInteractive().addHeader("authorization", bearer())
        .invoke(org.apache.pekko.stream.javadsl.Source.single(sized).concat(org.apache.pekko.stream.javadsl.Source.never()))
        .runWith(Sink.seq(), clientSystem));
    assertEquals("33 111\r\n", tty.stream().filter(r -> r.hasStdout()).map(r -> r.getStdout().toStringUtf8())
        .collect(java.util.stream.Collectors.joining()));

    java.util.Map<String, List<dev.flotilla.api.v1.ExecInteractiveRequest>> bad = new java.util.LinkedHashMap<>();
    bad.put("stdin first", List.of(stdin));
    bad.put("a second start", List.of(startOf(id, false, "cat"), startOf(id, false, "cat")));
    bad.put("a zero resize", List.of(startOf(id, true, "cat"), dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder()
        .setResize(dev.flotilla.api.v1.ExecInteractiveResize.newBuilder().setRows(0).setCols(80)).build()));
    bad.put("a resize without a terminal", List.of(startOf(id, false, "cat"), dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder()
        .setResize(dev.flotilla.api.v1.ExecInteractiveResize.newBuilder().setRows(10).setCols(80)).build()));
    bad.put("a huge stdin message", List.of(startOf(id, false, "cat"), dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder()
        .setStdin(com.google.protobuf.ByteString.copyFrom(new byte[65 * 1024])).build()));
    bad.put("an unknown signal", List.of(startOf(id, false, "cat"),
        dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder().setSignal("NOPE").build()));
    bad.put("a size without a terminal", List.of(dev.flotilla.api.v1.ExecInteractiveRequest.newBuilder()
        .setStart(dev.flotilla.api.v1.ExecInteractiveStart.newBuilder().setSandboxId(id).addArgv("cat").setRows(10)).build()));
    for (var b : bad.entrySet()) {
      io.grpc.StatusRuntimeException e = failure(() -> execInteractive(b.getValue()));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), b.getKey() + ": " + e.getStatus());
      assertTrue(e.getStatus().getDescription() != null && !e.getStatus().getDescription().isBlank(), b.getKey());
    }

    Cli cat = cli("one\ntwo\n", "exec", "-i", id, "--", "sh", "-c", "cat; exit 5");
    assertEquals(5, cat.code(), cat.err());
    assertEquals("one\ntwo\n", cat.out());
    Cli noTty = cli("", "exec", "-it", id, "--", "sh");
    assertEquals(2, noTty.code());
    assertTrue(noTty.err().contains("not a TTY"), noTty.err());
    assertEquals(2, cli("", "exec", "-t", id, "--", "sh").code());
  }

  /**
   * {@code exec -it} as a user runs it: the real CLI in its own JVM in a tmux pane (a terminal the
   * test types into and resizes). A typed command's output shows, the remote terminal has the
   * pane's size and TERM and follows a resize, Ctrl-C reaches the remote foreground job and not the
   * CLI, the exit code comes through, and the local terminal's settings are what they were before.
   */
  @Test
  void execItInATerminal() throws Exception {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    Path dir = Files.createTempDirectory("exec-it");
    String sock = dir.resolve("tmux.sock").toString();
    try {
      Files.writeString(dir.resolve("flotilla"), "#!/bin/sh\nexec '" + Path.of(System.getProperty("java.home"), "bin", "java")
          + "' -cp '" + System.getProperty("java.class.path") + "' dev.flotilla.cli.Cli \"$@\"\n");
      Files.setPosixFilePermissions(dir.resolve("flotilla"), java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
      Files.writeString(dir.resolve("session.sh"), "export FLOTILLA_ENDPOINT=127.0.0.1:" + node.node.grpcPort()
          + " FLOTILLA_TOKEN=" + token + " TERM=xterm-256color\n"
          + "before=$(stty -g)\n"
          + "./flotilla exec -it " + id + " -- sh\n"
          + "code=$?\n"
          + "[ \"$before\" = \"$(stty -g)\" ] && same=restored || same=changed\n"
          + "echo \"$code $same\" > result.tmp && mv result.tmp result\n"
          + "exec sleep 600\n");
      Files.writeString(dir.resolve("tmux.conf"), "set -g status off\n");
      tmux(dir, sock, "-f", dir.resolve("tmux.conf").toString(), "new-session", "-d", "-s", "it", "-x", "100", "-y", "30",
          "sh session.sh");
      java.util.function.Supplier<String> pane = () -> tmux(dir, sock, "capture-pane", "-p", "-J", "-S", "-200", "-t", "it");
      org.awaitility.Awaitility.await().atMost(READY).until(() -> pane.get().contains("# "));
      tmux(dir, sock, "send-keys", "-t", "it", "echo typed-$((6*7)) $TERM; stty size", "Enter");
      org.awaitility.Awaitility.await().atMost(READY).until(() -> pane.get().contains("typed-42 xterm-256color"));
      org.awaitility.Awaitility.await().atMost(READY).until(() -> pane.get().contains("\n30 100"));

      tmux(dir, sock, "resize-window", "-t", "it", "-x", "120", "-y", "40");
      org.awaitility.Awaitility.await().atMost(READY).untilAsserted(() -> {
        tmux(dir, sock, "send-keys", "-t", "it", "stty size", "Enter");
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(2)).until(() -> pane.get().contains("\n40 120"));
      });

      tmux(dir, sock, "send-keys", "-t", "it", "sleep 100", "Enter");
      org.awaitility.Awaitility.await().atMost(READY).until(() -> pane.get().contains("sleep 100"));
      tmux(dir, sock, "send-keys", "-t", "it", "C-c");
      tmux(dir, sock, "send-keys", "-t", "it", "echo alive-$((1+1))", "Enter");
      org.awaitility.Awaitility.await().atMost(READY).until(() -> pane.get().contains("\nalive-2"));

      tmux(dir, sock, "send-keys", "-t", "it", "exit 7", "Enter");
      Path result = dir.resolve("result");
      org.awaitility.Awaitility.await().atMost(READY).until(() -> Files.exists(result));
      assertEquals("7 restored", Files.readString(result).strip(), pane.get());
    } finally {
      new ProcessBuilder("tmux", "-S", sock, "kill-server").start().waitFor();
      TestTools.run(null, "rm", "-rf", dir.toString());
    }
  }

  private static String tmux(Path dir, String sock, String... args) {
    List<String> cmd = new java.util.ArrayList<>(List.of("tmux", "-S", sock));
    cmd.addAll(List.of(args));
    try {
      Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
      assertTrue(p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS), "tmux " + cmd);
      assertEquals(0, p.exitValue(), cmd + ": " + out);
      return out;
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError(e);
    }
  }
}
