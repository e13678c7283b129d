package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.flotilla.agent.guest.process.ExecDefaults;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.guest.rebirth.DeferredRoot;
import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.ClientOptions;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.Rebirth;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A template's agent, in process over pipes, reborn as a clone: the system side is a recording
 * fake (the test host's clock and hostname stay as they are), the deferred root a script that
 * appends to the same log, and the tenant root's nsenter a stand-in that records its arguments.
 */
class RebirthTest {

  private static final Duration DEADLINE = Duration.ofSeconds(10);
  private static final byte[] TEMPLATE_SECRET = filled(16, 1);
  private static final byte[] CLONE_SECRET = filled(32, 2);
  private static final AgentAddress.Rebirth FROM = new AgentAddress.Rebirth("tpl", 1, TEMPLATE_SECRET, "fl-sbx-9");

  @TempDir Path dir;
  private Path log;
  private Path nsenterLog;
  private Path execDefaults;
  private Path script;
  private RecordingCloneSystem system;
  private GuestAgent agent;
  private final List<AutoCloseable> toClose = new ArrayList<>();

  private static byte[] filled(int n, int b) {
    byte[] a = new byte[n];
    Arrays.fill(a, (byte) b);
    return a;
  }

  @BeforeEach
  void template() throws Exception {
    log = dir.resolve("steps.log");
    nsenterLog = dir.resolve("nsenter.log");
    execDefaults = dir.resolve("exec-defaults.properties");
    Path root = Files.createDirectories(dir.resolve("root"));
    // Stands in for util-linux's nsenter: records how it was called, then runs the command here.
    Path nsenter = executable("nsenter", "#!/bin/sh\n"
        + "while [ \"$1\" != -- ]; do echo \"$1\" >>'" + nsenterLog + "'; shift; done\nshift\nexec \"$@\"\n");
    script = executable("flotilla-root", "#!/bin/sh\n"
        + "echo root >>'" + log + "'\n"
        + "echo 'env.IMAGE_VAR=from-the-image' >'" + execDefaults + "'\n"
        + "echo mounted the tenant root\n");
    system = new RecordingCloneSystem(log);
    AgentConfig config = AgentConfig.of("tpl", 1).withSecret(HandshakeSecret.of(TEMPLATE_SECRET))
        .withDeferredRoot(new TenantRoot(root, nsenter), new DeferredRoot(script, execDefaults, null, Duration.ofSeconds(10)));
    agent = new GuestAgent(config, powerOff -> { }, code -> { }, system);
  }

  @AfterEach
  void stop() throws Exception {
    ConsoleLines.console().release(); // the console is the JVM's: no hold outlives its test
    for (AutoCloseable c : toClose) c.close();
    agent.stopProcesses(Duration.ofSeconds(1));
  }

  private Path executable(String name, String text) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, text);
    Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwx------"));
    return p;
  }

  /** A connection to the agent whose handshakes send {@code secret} (and the template's credentials with {@code rebirth}). */
  private AgentClient connect(byte[] secret, AgentAddress.Rebirth rebirth) {
    return connect(agent, secret, rebirth);
  }

  /** The same to another agent than the test's template. */
  private AgentClient connect(GuestAgent target, byte[] secret, AgentAddress.Rebirth rebirth) {
    MemoryPipe toAgent = new MemoryPipe(1 << 16);
    MemoryPipe toHost = new MemoryPipe(1 << 16);
    target.serveAsync(toAgent.input(), toHost.output(), "pipe");
    AgentClient c = rebirth == null
        ? AgentClients.over(toHost.input(), toAgent.output(), "pipe", ClientOptions.defaults(), secret)
        : AgentClients.over(toHost.input(), toAgent.output(), "pipe", ClientOptions.defaults(), secret, rebirth);
    toClose.add(c);
    return c;
  }

  private static <T> T get(CompletableFuture<T> f) throws Exception {
    try {
      return f.get(DEADLINE.toSeconds() + 5, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof Exception c) throw c;
      throw e;
    }
  }

  private static AgentException failure(AgentException.Code code, CompletableFuture<?> f) {
    ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(DEADLINE.toSeconds() + 5, TimeUnit.SECONDS));
    AgentException ae = assertInstanceOf(AgentException.class, e.getCause());
    assertEquals(code, ae.code(), () -> "unexpected failure: " + ae);
    return ae;
  }

  private String run(AgentClient c, String execId, String shell) throws Exception {
    CollectingSink sink = new CollectingSink();
    get(c.exec(ExecRequest.of(execId, "sh", "-c", shell), sink, DEADLINE));
    assertEquals(0, get(c.waitProcess(execId, DEADLINE)).exitCode(), sink.stderr());
    get(sink.ended);
    return sink.stdout().strip();
  }

  /** The template's agent still answers as the template, and nothing of a rebirth happened. */
  private void stillTheTemplate() throws Exception {
    GuestInfo info = get(connect(TEMPLATE_SECRET, null).handshake("tpl", 1, DEADLINE));
    assertEquals("tpl", info.sandboxId());
    assertEquals(1, info.incarnation());
  }

  @Test
  void aRebirthAppliesEveryStepInOrderThenServesTheNewIdentity() throws Exception {
    // the template's warm-up: an exec in the agent's own root (the tenant's is not mounted yet)
    AgentClient warm = connect(TEMPLATE_SECRET, null);
    assertEquals("tpl", get(warm.handshake("tpl", 1, DEADLINE)).sandboxId());
    assertEquals("tpl 1", run(warm, "warm", "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION"));
    assertFalse(Files.exists(nsenterLog), "before the rebirth no process enters the tenant root");

    long before = System.currentTimeMillis();
    AgentClient clone = connect(CLONE_SECRET, FROM);
    GuestInfo info = get(clone.handshake("sbx-9", 7, DEADLINE));
    assertEquals("sbx-9", info.sandboxId());
    assertEquals(7, info.incarnation());

    List<String> steps = system.lines();
    assertEquals(4, steps.size(), steps.toString());
    assertTrue(steps.get(0).matches("rng [0-9a-f]{64}"), "the host's 32-byte seed goes to the kernel first: " + steps);
    long clock = Long.parseLong(steps.get(1).substring("clock ".length()));
    assertTrue(clock >= before && clock <= System.currentTimeMillis(), "the host's clock at send: " + steps);
    assertEquals("hostname fl-sbx-9", steps.get(2));
    assertEquals("root", steps.get(3), "the deferred root is mounted last, before the identity changes");

    // processes now run in the tenant root, with its exec defaults (written by the script) and the new identity
    assertEquals("from-the-image sbx-9 7", run(clone, "after", "echo $IMAGE_VAR $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION"));
    String nsenter = Files.readString(nsenterLog);
    assertTrue(nsenter.contains("--root=" + dir.resolve("root")), nsenter);

    // the template's identity is stale now: on the connection that named it, and on a new one
    AgentException stale = failure(AgentException.Code.FAILED_PRECONDITION, warm.ping(DEADLINE));
    assertTrue(stale.getMessage().contains("no longer serves"), stale.getMessage());
    failure(AgentException.Code.PERMISSION_DENIED, connect(TEMPLATE_SECRET, null).handshake("tpl", 1, DEADLINE));
    AgentException named = failure(AgentException.Code.FAILED_PRECONDITION,
        connect(CLONE_SECRET, null).handshake("tpl", 1, DEADLINE));
    assertTrue(named.getMessage().contains("stale incarnation"), named.getMessage());
    // the new identity's plain handshake is served
    assertEquals("sbx-9", get(connect(CLONE_SECRET, null).handshake("sbx-9", 7, DEADLINE)).sandboxId());
  }

  @Test
  void fileCallsWaitForTheTenantsRoot() throws Exception {
    AgentClient warm = connect(TEMPLATE_SECRET, null);
    get(warm.handshake("tpl", 1, DEADLINE));
    AgentException e = failure(AgentException.Code.FAILED_PRECONDITION,
        warm.writeFile("/hello", new java.io.ByteArrayInputStream("x".getBytes()), 0644, DEADLINE));
    assertTrue(e.getMessage().contains("needs the tenant's root"), e.getMessage());
    assertFalse(Files.exists(dir.resolve("root/hello")));

    AgentClient clone = connect(CLONE_SECRET, FROM);
    get(clone.handshake("sbx-9", 7, DEADLINE));
    get(clone.writeFile("/hello", new java.io.ByteArrayInputStream("x".getBytes()), 0644, DEADLINE));
    assertEquals("x", Files.readString(dir.resolve("root/hello")), "after the rebirth files are the tenant root's");
  }

  @Test
  void aRetryOfTheSameRebirthIsAPlainHandshake() throws Exception {
    AgentClient clone = connect(CLONE_SECRET, FROM);
    GuestInfo first = get(clone.handshake("sbx-9", 7, DEADLINE));
    // the answer was lost: the host sends the same rebirth again, on this connection and on another
    GuestInfo again = get(clone.handshake("sbx-9", 7, DEADLINE));
    GuestInfo other = get(connect(CLONE_SECRET, FROM).handshake("sbx-9", 7, DEADLINE));
    assertEquals("sbx-9", again.sandboxId());
    assertEquals("sbx-9", other.sandboxId());
    assertEquals(4, system.lines().size(), "nothing is applied twice: " + system.lines());
    assertNotEquals(first.randomId(), again.randomId(), "each answer draws its own random id");
    assertNotEquals(again.randomId(), other.randomId());
    assertEquals(36, first.randomId().length(), first.randomId());
    // a retry must carry the new secret, as the rebirth fixed it
    byte[] wrong = CLONE_SECRET.clone();
    wrong[0] ^= 1;
    failure(AgentException.Code.PERMISSION_DENIED, connect(wrong, FROM).handshake("sbx-9", 7, DEADLINE));
  }

  @Test
  void aWrongTemplateSecretIsRefusedAndNothingIsApplied() throws Exception {
    byte[] wrong = TEMPLATE_SECRET.clone();
    wrong[3] ^= 1;
    AgentClient c = connect(CLONE_SECRET, new AgentAddress.Rebirth("tpl", 1, wrong, "fl-sbx-9"));
    AgentException e = failure(AgentException.Code.PERMISSION_DENIED, c.handshake("sbx-9", 7, DEADLINE));
    assertTrue(e.getMessage().contains("secret is wrong"), e.getMessage());
    // and a stale template identity with the right secret
    failure(AgentException.Code.FAILED_PRECONDITION,
        connect(CLONE_SECRET, new AgentAddress.Rebirth("tpl", 0, TEMPLATE_SECRET, "fl-sbx-9")).handshake("sbx-9", 7, DEADLINE));
    assertEquals(List.of(), system.lines(), "nothing applied");
    stillTheTemplate();
  }

  /** A rebirth handshake with the template's credentials and the given changes to a valid rebirth. */
  private Response rawRebirth(UnaryOperator<Rebirth.Builder> change) throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 16);
    MemoryPipe toHost = new MemoryPipe(1 << 16);
    agent.serveAsync(toAgent.input(), toHost.output(), "raw");
    Map<Integer, CompletableFuture<Response>> answers = new ConcurrentHashMap<>();
    FrameConnection conn = new FrameConnection(toHost.input(), toAgent.output(), "raw-host", 1 << 20);
    conn.start(f -> {
      if (f.type() != FrameType.RESPONSE) return;
      try {
        answers.computeIfAbsent(f.streamId(), k -> new CompletableFuture<>()).complete(Response.parseFrom(f.payload()));
      } catch (java.io.IOException e) {
        throw new IllegalStateException(e);
      }
    });
    toClose.add(conn);
    Rebirth.Builder r = Rebirth.newBuilder().setSandboxId("sbx-9").setIncarnation(7)
        .setSecret(ByteString.copyFrom(CLONE_SECRET)).setHostname("fl-sbx-9")
        .setWallClockUnixMs(System.currentTimeMillis()).setSeed(ByteString.copyFrom(filled(32, 5)));
    Request req = Request.newBuilder().setHandshake(HandshakeRequest.newBuilder().setSandboxId("tpl").setIncarnation(1)
        .setSecret(ByteString.copyFrom(TEMPLATE_SECRET)).setRebirth(change.apply(r))).build();
    conn.trySend(Frame.request(1, req.toByteArray()));
    return answers.computeIfAbsent(1, k -> new CompletableFuture<>()).get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
  }

  @Test
  void badRebirthFieldsAreInvalidArgumentsAndNothingIsApplied() throws Exception {
    Map<String, UnaryOperator<Rebirth.Builder>> bad = Map.of(
        "seed", r -> r.setSeed(ByteString.copyFrom(filled(31, 5))),
        "secret", r -> r.setSecret(ByteString.copyFrom(filled(15, 2))),
        "hostname", r -> r.setHostname("-fl-sbx"),
        "hostname '", r -> r.setHostname("a".repeat(64)),
        "wall_clock_unix_ms", r -> r.setWallClockUnixMs(0),
        "sandbox_id", r -> r.setSandboxId(""));
    for (var e : bad.entrySet()) {
      Response r = rawRebirth(e.getValue());
      assertEquals(Error.Code.INVALID_ARGUMENT, r.getError().getCode(), e.getKey() + ": " + r);
      assertTrue(r.getError().getMessage().contains(e.getKey()), r.getError().getMessage());
    }
    assertEquals(List.of(), system.lines(), "nothing applied");
    stillTheTemplate();
    // the same request with valid fields goes through: the cases above failed for their field only
    assertTrue(rawRebirth(r -> r).hasHandshake());
  }

  @Test
  void aFailingDeferredRootRefusesTheRebirthAndKeepsTheIdentity() throws Exception {
    Files.writeString(script, "#!/bin/sh\necho 'cannot mount the image (/dev/vda)' >&2\nexit 3\n");
    AgentClient clone = connect(CLONE_SECRET, FROM);
    AgentException e = failure(AgentException.Code.FAILED_PRECONDITION, clone.handshake("sbx-9", 7, DEADLINE));
    assertTrue(e.getMessage().contains("exited with 3"), e.getMessage());
    assertTrue(e.getMessage().contains("cannot mount the image (/dev/vda)"), "the script's output: " + e.getMessage());
    assertTrue(e.getMessage().contains("still sandbox tpl incarnation 1"), e.getMessage());
    stillTheTemplate();
    failure(AgentException.Code.PERMISSION_DENIED, connect(CLONE_SECRET, null).handshake("sbx-9", 7, DEADLINE));
  }

  @Test
  void aKernelStepThatFailsRefusesTheRebirthBeforeTheRootIsMounted() throws Exception {
    system.failOn = "clock";
    AgentException e = failure(AgentException.Code.INTERNAL, connect(CLONE_SECRET, FROM).handshake("sbx-9", 7, DEADLINE));
    assertTrue(e.getMessage().contains("recorded failure of clock"), e.getMessage());
    List<String> steps = system.lines();
    assertEquals(1, steps.size(), "the seed went in, nothing after the clock: " + steps);
    assertTrue(steps.get(0).startsWith("rng "), steps.toString());
    stillTheTemplate();
  }

  @Test
  void everyHandshakeAnswerDrawsItsOwnRandomId() throws Exception {
    AgentClient c = connect(TEMPLATE_SECRET, null);
    String a = get(c.handshake("tpl", 1, DEADLINE)).randomId();
    String b = get(c.handshake("tpl", 1, DEADLINE)).randomId();
    assertNotEquals(a, b);
    assertTrue(a.matches("[0-9a-f-]{36}"), a);
  }

  @Test
  void concurrentRebirthsYieldOneIdentity() throws Exception {
    // two hosts race with different identities: one wins, the other finds the template stale
    AtomicInteger ok = new AtomicInteger();
    List<CompletableFuture<GuestInfo>> races = List.of(
        connect(CLONE_SECRET, FROM).handshake("sbx-9", 7, DEADLINE),
        connect(filled(32, 3), FROM).handshake("sbx-8", 7, DEADLINE));
    List<String> winners = new ArrayList<>();
    for (CompletableFuture<GuestInfo> f : races) {
      try {
        winners.add(get(f).sandboxId());
        ok.incrementAndGet();
      } catch (AgentException e) {
        assertTrue(e.code() == AgentException.Code.PERMISSION_DENIED || e.code() == AgentException.Code.FAILED_PRECONDITION,
            e.toString());
      }
    }
    assertEquals(1, ok.get(), "exactly one rebirth wins: " + winners);
    assertEquals(4, system.lines().size(), "one rebirth's steps: " + system.lines());
  }

  @Test
  void aRebornAgentIsRebornAgainWithoutMountingItsRootTwice() throws Exception {
    // a clone, later snapshotted and restored as another sandbox (a fork) or its next incarnation
    AgentClient clone = connect(CLONE_SECRET, FROM);
    get(clone.handshake("sbx-9", 7, DEADLINE));
    assertEquals(4, system.lines().size(), system.lines().toString());
    byte[] forkSecret = filled(32, 4);
    AgentClient fork = connect(forkSecret, new AgentAddress.Rebirth("sbx-9", 7, CLONE_SECRET, "fl-fork-1"));
    GuestInfo info = get(fork.handshake("fork-1", 1, DEADLINE));
    assertEquals("fork-1", info.sandboxId());
    assertEquals(1, info.incarnation());
    List<String> steps = system.lines();
    assertEquals(7, steps.size(), "the seed, the clock and the hostname again, the root not: " + steps);
    assertTrue(steps.get(4).startsWith("rng "), steps.toString());
    assertTrue(steps.get(5).startsWith("clock "), steps.toString());
    assertEquals("hostname fl-fork-1", steps.get(6));
    // still in the tenant root, with its exec defaults, under the new identity
    assertEquals("from-the-image fork-1 1", run(fork, "after", "echo $IMAGE_VAR $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION"));
    failure(AgentException.Code.PERMISSION_DENIED, connect(CLONE_SECRET, null).handshake("sbx-9", 7, DEADLINE));
  }

  @Test
  void aTemplatesAnnouncedSaveHoldsItsConsoleLinesUntilTheClonesFirstAnswer() throws Exception {
    get(connect(TEMPLATE_SECRET, null).handshake("tpl", 1, DEADLINE));
    assertFalse(ConsoleLines.console().holding(), "a plain handshake holds nothing");
    // the node announces the save (QemuTemplates.warm): the template's agent collects its heap and holds its lines
    AgentClient announce = connect(TEMPLATE_SECRET, null);
    assertEquals("tpl", get(announce.handshake("tpl", 1, Duration.ZERO, true, DEADLINE)).sandboxId());
    assertTrue(ConsoleLines.console().holding(), "held from the save on");
    // the clone's first handshake is answered, then its lines are written
    GuestInfo info = get(connect(CLONE_SECRET, FROM).handshake("sbx-9", 7, DEADLINE));
    assertEquals("sbx-9", info.sandboxId());
    // released by the agent right after it has sent that answer, so by the time the client has it, or just after
    org.awaitility.Awaitility.await("released once the clone has answered").atMost(Duration.ofSeconds(10))
        .until(() -> !ConsoleLines.console().holding());
    // a reborn agent told of a pause (PauseSandbox) is a sandbox: it holds nothing
    get(connect(CLONE_SECRET, null).handshake("sbx-9", 7, Duration.ZERO, true, DEADLINE));
    assertFalse(ConsoleLines.console().holding(), "only a template's save holds the console");
  }

  @Test
  void anAgentThatWasNeverATemplateAcceptsARebirth() throws Exception {
    // a cold-booted VM, snapshotted: its agent has its tenant root and its own identity
    Path root = Files.createDirectories(dir.resolve("cold-root"));
    Path nsenter = executable("nsenter-cold", "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n");
    byte[] coldSecret = filled(32, 6);
    RecordingCloneSystem coldSystem = new RecordingCloneSystem(dir.resolve("cold-steps.log"));
    AgentConfig c0 = AgentConfig.of("cold", 3).withSecret(HandshakeSecret.of(coldSecret));
    AgentConfig config = new AgentConfig(c0.sandboxId(), c0.incarnation(), c0.maxPayload(), c0.fileChunk(), c0.exitRetention(),
        c0.powerOffCommand(), c0.secret(), c0.execDefaults(), new TenantRoot(root, nsenter), null, false);
    GuestAgent cold = new GuestAgent(config, powerOff -> { }, code -> { }, coldSystem);
    toClose.add(() -> cold.stopProcesses(Duration.ofSeconds(1)));
    AgentClient c = connect(cold, CLONE_SECRET, new AgentAddress.Rebirth("cold", 3, coldSecret, "fl-cold-4"));
    GuestInfo info = get(c.handshake("cold", 4, DEADLINE));
    assertEquals("cold", info.sandboxId());
    assertEquals(4, info.incarnation());
    List<String> steps = coldSystem.lines();
    assertEquals(3, steps.size(), "seed, clock, hostname; no root to mount: " + steps);
    assertEquals("hostname fl-cold-4", steps.get(2));
    assertEquals("cold 4", run(c, "cold-after", "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION"));
    assertEquals(0, coldSystem.prepared.get(), "an agent that is no template loads no rebirth code ahead");
  }

  @Test
  void aTemplateWhoseRootIsMountedBeforeItsSaveServesInItAndIsRebornWithoutMounting() throws Exception {
    // flotilla.template=mounted: init mounted the root as on a cold boot; the agent is a template (--template)
    Path root = Files.createDirectories(dir.resolve("mounted-root"));
    Files.writeString(root.resolve("marker"), "the tenant's\n");
    Path nsenter = executable("nsenter-mounted", "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\ncd " + root + "\nexec \"$@\"\n");
    byte[] templateSecret = filled(32, 7);
    RecordingCloneSystem mountedSystem = new RecordingCloneSystem(dir.resolve("mounted-steps.log"));
    AgentConfig c0 = AgentConfig.of("tpl-m", 1);
    AgentConfig config = new AgentConfig(c0.sandboxId(), c0.incarnation(), c0.maxPayload(), c0.fileChunk(), c0.exitRetention(),
        c0.powerOffCommand(), HandshakeSecret.of(templateSecret), c0.execDefaults(), new TenantRoot(root, nsenter), null, false)
        .asTemplate();
    assertTrue(config.template());
    GuestAgent template = new GuestAgent(config, powerOff -> { }, code -> { }, mountedSystem);
    toClose.add(() -> template.stopProcesses(Duration.ofSeconds(1)));
    assertEquals(1, mountedSystem.prepared.get(), "the template's agent loads the rebirth's code before its save");

    // the template's own warm-up already runs in the tenant's root
    AgentClient warm = connect(template, templateSecret, null);
    get(warm.handshake("tpl-m", 1, DEADLINE));
    assertEquals("the tenant's", run(warm, "warm-0", "cat marker"));

    AgentClient c = connect(template, CLONE_SECRET, new AgentAddress.Rebirth("tpl-m", 1, templateSecret, "fl-m-1"));
    GuestInfo info = get(c.handshake("m", 1, DEADLINE));
    assertEquals("m", info.sandboxId());
    assertEquals(List.of("rng", "clock", "hostname"), mountedSystem.lines().stream().map(l -> l.split(" ")[0]).toList(),
        "seed, clock, hostname; nothing to mount");
    assertEquals("m 1 the tenant's", run(c, "m-after", "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION $(cat marker)"));
  }
}
