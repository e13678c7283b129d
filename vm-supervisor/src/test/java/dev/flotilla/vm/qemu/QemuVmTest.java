package dev.flotilla.vm.qemu;

import static dev.flotilla.vm.qemu.TestAgent.run;
import static dev.flotilla.vm.qemu.TestAgent.startProcess;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Real microVMs (TCG on CI: a boot takes seconds, so two boots cover everything). Skipped only
 * when the guest image has not been built; CI builds it before the tests.
 */
class QemuVmTest {

  /** Boot under TCG on 2 shared cores plus the agent's JVM start: generous, but bounded. */
  private static final Duration BOOT = Duration.ofSeconds(90);
  private static final Duration CALL = Duration.ofSeconds(30);

  private static QemuConfig config;
  private static Path driverRoot;
  private final List<Vm> vms = new ArrayList<>();
  private final List<AgentClient> clients = new ArrayList<>();
  private final List<Process> children = new ArrayList<>();
  private Path stateRoot;

  @BeforeAll
  static void image() throws IOException {
    driverRoot = Files.createTempDirectory("fl-qemu-driver");
    config = TestQemu.config(driverRoot);
    assumeTrue(config.imageBuilt(), "guest image not built in " + config.imageDir()
        + ": run guest-image/build.sh (scripts/test.sh does) to run the QEMU tests");
  }

  @AfterAll
  static void dropDriverRoot() {
    QemuJail.deleteTree(driverRoot);
  }

  private static QemuHypervisor hypervisor() throws IOException {
    return TestQemu.hypervisor(config);
  }

  @BeforeEach
  void dirs() throws IOException {
    stateRoot = Files.createTempDirectory("fl-qemu");
  }

  @AfterEach
  void cleanUp() throws IOException {
    clients.forEach(AgentClient::close);
    for (Vm vm : vms) {
      vm.kill();
      vm.exitFuture().orTimeout(20, TimeUnit.SECONDS).exceptionally(e -> null).join();
      // the guest's console (kernel and agent) in the test's output, for when it failed
      Path console = vm.handle().stateDir().resolve("console.log");
      if (Files.exists(console)) {
        System.out.println("---- console of " + vm.handle().sandboxId() + " ----\n" + Files.readString(console));
      }
    }
    // whatever a failed test left: test nodes, and QEMUs named by saved handles (same start time
    // only) with their cgroups, reaped as a restarted node would
    children.forEach(Process::destroyForcibly);
    try (Stream<Path> files = Files.walk(stateRoot)) {
      for (Path h : files.filter(f -> f.getFileName().toString().equals(VmHandle.FILE_NAME)).toList()) {
        hypervisor().reap(VmHandle.load(h.getParent()));
      }
    }
    try (Stream<Path> files = Files.walk(stateRoot)) {
      files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    }
  }

  @Test
  void bootsExecsResizesPausesReconnectsAndReportsKillMinus9() throws Exception {
    // 384 MiB: room to shrink above the driver's 256 MiB floor (untouched guest RAM costs the host nothing)
    Vm vm = boot(hypervisor(), "boot", 1, 384);

    // given a booted guest, its agent describes the guest's own kernel and virtualization
    AgentClient agent = connect(vm);
    GuestInfo info = agent.handshake("boot", 1, BOOT).get();
    String hostKernel = Files.readString(Path.of("/proc/sys/kernel/osrelease")).trim();
    assertTrue(info.kernel().contains("-amd64"), info.kernel());
    assertTrue(info.kernel().startsWith(imageKernel()), "guest kernel " + info.kernel() + " (host " + hostKernel + ")");
    // A microvm has no DMI tables: the agent names QEMU from its ACPI tables (TCG), or KVM from
    // the kernel's kvm-clock.
    assertTrue(List.of("qemu", "kvm").contains(info.virtualization()), "virtualization " + info.virtualization());

    // the agent runs on the image's class archive, an AOT cache or a CDS archive (a silent fall-back
    // costs ~1.4 s of boot): the JVM unmaps one that fails its checks
    String archive = imageProperty("archive").split(" ")[0];
    if (!archive.equals("none")) {
      assertTrue(Integer.parseInt(run(agent, "grep -c " + archive + " /proc/" + info.agentPid() + "/maps").output().trim()) > 0,
          "the guest agent maps " + archive);
    }

    // network none (the default): no network device at all, so nothing to reach (no boot of its own
    // for this: QemuEgressNetworkTest covers egress)
    assertEquals("lo\n", run(agent, "ls /sys/class/net").output());
    TestAgent.Result unreachable = run(agent, "wget -q -O - http://10.0.2.2/ 2>&1");
    assertTrue(unreachable.status().exitCode() != 0 && unreachable.output().contains("unreachable"), unreachable.toString());

    // exec output, exit codes and files work
    assertEquals("hello from the guest\n", run(agent, "echo hello from the guest").output());
    assertEquals(3, run(agent, "exit 3").status().exitCode());
    agent.writeFile("/tmp/f.txt", new ByteArrayInputStream("abc".getBytes(StandardCharsets.UTF_8)), 0644, CALL).get();
    assertEquals("abc", run(agent, "cat /tmp/f.txt").output());

    // a port on the guest's own loopback is forwarded over the agent's virtio-serial stream
    startProcess(agent, "nc", "nc -l -p 9000 -e sh -c 'echo hi from the vm'");
    await().atMost(CALL).ignoreExceptions().until(() -> {
      var got = new java.io.ByteArrayOutputStream();
      var end = new CompletableFuture<Void>();
      agent.openPort(9000, new dev.flotilla.agent.protocol.client.PortSink() {
        @Override public synchronized void onData(byte[] data, Runnable release) { got.writeBytes(data); release.run(); }
        @Override public void onEnd() { end.complete(null); }
        @Override public void onError(Throwable e) { end.completeExceptionally(e); }
      }, CALL).get().closeWrite();
      end.get(CALL.toSeconds(), TimeUnit.SECONDS);
      return got.toString(StandardCharsets.UTF_8).equals("hi from the vm\n");
    });

    // live resize: the balloon takes 128 MiB from the guest, QEMU's cgroup follows, and gives it back
    QemuVm q = (QemuVm) vm;
    Path memcg = Path.of(vm.handle().extra().get("cgroup.memory"));
    long overhead = config.memoryOverheadMiB();
    assertEquals(384L << 20, q.balloonActual());
    long memTotal = memTotalKiB(agent);
    vm.resize(1, 256);
    assertEquals(256L << 20, q.balloonActual());
    assertEquals((256 + overhead) << 20, Long.parseLong(Files.readString(memcg.resolve("memory.limit_in_bytes")).trim()));
    await().atMost(CALL).until(() -> memTotalKiB(agent) <= memTotal - 127 * 1024);
    vm.resize(1, 384);
    assertEquals(384L << 20, q.balloonActual());
    assertEquals((384 + overhead) << 20, Long.parseLong(Files.readString(memcg.resolve("memory.limit_in_bytes")).trim()));
    await().atMost(CALL).until(() -> memTotalKiB(agent) >= memTotal);
    // beyond the boot size, vCPUs, below the floor: refused with the reason, nothing changed
    VmException beyond = assertThrows(VmException.class, () -> vm.resize(1, 512));
    assertTrue(beyond.getMessage().contains("booted with 384 MiB"), beyond.getMessage());
    VmException cpus = assertThrows(VmException.class, () -> vm.resize(2, 384));
    assertTrue(cpus.getMessage().contains("no CPU hot-plug"), cpus.getMessage());
    assertThrows(VmException.class, () -> vm.resize(1, 200));
    assertEquals(384L << 20, q.balloonActual());
    assertEquals("still here\n", run(agent, "echo still here").output());

    // pause stops the guest: a process started before does not finish until resume
    startProcess(agent, "p1", "sleep 2; echo done"); // long enough to be caught by the pause under load
    vm.pause();
    assertEquals("paused", ((QemuVm) vm).status(Duration.ofSeconds(5)));
    VmException paused = assertThrows(VmException.class, () -> vm.resize(1, 256));
    assertTrue(paused.getMessage().contains("resume it first"), paused.getMessage());
    CompletableFuture<ExitStatus> waiting = agent.waitProcess("p1", CALL);
    await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(4)).until(() -> !waiting.isDone());
    vm.resume();
    assertEquals(0, waiting.get(CALL.toSeconds(), TimeUnit.SECONDS).exitCode());

    // a host that goes away and comes back (a restarted node) gets a fresh, resynced stream
    agent.close();
    AgentClient again = connect(vm);
    assertEquals(info.agentPid(), again.handshake("boot", 1, CALL).get().agentPid());
    assertEquals("again\n", run(again, "echo again").output());

    // a host that leaves mid-frame, and one that sends garbage, both leave the next host a clean
    // stream. (Whether the agent answers the garbage with GOAWAY or silently discards it until the
    // next Handshake depends on whether the guest saw the previous host leave first: a race under
    // load, so only the clean next session is asserted.)
    again.close();
    rawSession(vm, new byte[] {0, 0, 0});
    rawSession(vm, new byte[256]);
    AgentClient third = connect(vm);
    third.handshake("boot", 1, CALL).get();
    assertEquals("third\n", run(third, "echo third").output());

    // kill -9 of QEMU from outside is reported as an exit by that signal, not one we asked for
    ProcessHandle.of(vm.handle().pid()).orElseThrow().destroyForcibly();
    VmExit exit = vm.exitFuture().get(20, TimeUnit.SECONDS);
    assertEquals(9, exit.signal(), exit.toString());
    assertFalse(exit.requested());
  }

  @Test
  void aGuestWhoseLeaseRunsOutEndsAndSaysWhy() throws Exception {
    Vm vm = boot(hypervisor(), "lease", 1);
    AgentClient agent = connect(vm);
    agent.handshake("lease", 1, Duration.ofSeconds(2), BOOT).get();
    startProcess(agent, "s", "sleep 1000");
    // the host sends nothing more, as a frozen node would: the agent ends the guest, and QEMU with it
    VmExit exit = vm.exitFuture().get(60, TimeUnit.SECONDS);
    String console = Files.readString(vm.handle().stateDir().resolve("console.log"));
    assertEquals(VmExit.AGENT_LEASE_EXPIRED, exit.exitCode(), exit + "\n" + console);
    assertFalse(exit.requested());
    assertTrue(exit.reason().contains("lease expired"), exit.reason());
    assertTrue(console.contains("flotilla-guest-agent: lease expired: no renewal from the node for"), console);
    assertEquals(OptionalInt.of(VmExit.AGENT_LEASE_EXPIRED), QemuVm.initExitCode(console), console);
  }

  @Test
  void outlivesTheNodeThatStartedItIsAdoptedAndStops() throws Exception {
    // given a node JVM that started a VM and crashed
    Path dir = stateRoot.resolve("adopt");
    Process node = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), "-Dlogback.configurationFile=/dev/null",
        TestQemuNode.class.getName(), config.imageDir().toString(), driverRoot.toString(), dir.toString(), "adopt", "2")
        .redirectErrorStream(true).redirectOutput(stateRoot.resolve("node.log").toFile()).start();
    children.add(node);
    assertTrue(node.waitFor(90, TimeUnit.SECONDS), "test node did not finish");
    assertEquals(137, node.exitValue(), Files.readString(stateRoot.resolve("node.log")));

    // when a new node adopts it from the saved handle
    VmHandle saved = VmHandle.load(dir);
    assertTrue(hypervisor().adopt(saved.withProcess(saved.pid(), saved.startTime() + 1)).isEmpty(),
        "a pid with another start time is not adopted");
    Vm adopted = hypervisor().adopt(saved).orElseThrow();
    vms.add(adopted);
    assertEquals(1L, ProcessHandle.of(saved.pid()).flatMap(ProcessHandle::parent).map(ProcessHandle::pid).orElse(-1L),
        "QEMU was reparented to init, out of the dead node's tree");

    // then its agent answers with the same identity, exec, pause and resume work, and stop ends it
    AgentClient agent = connect(adopted);
    assertTrue(agent.handshake("adopt", 2, BOOT).get().agentPid() > 0);
    assertEquals("adopted\n", run(agent, "echo adopted").output());
    adopted.pause();
    adopted.resume();
    assertEquals("running", ((QemuVm) adopted).status(Duration.ofSeconds(5)));
    adopted.stop(Duration.ofSeconds(5));
    VmExit exit = adopted.exitFuture().get(20, TimeUnit.SECONDS);
    assertTrue(exit.requested(), exit.toString());
    assertFalse(ProcessHandle.of(saved.pid()).map(ProcessHandle::isAlive).orElse(false), "QEMU still alive");
    // the adopting node frees the cgroups the dead node made
    for (String key : List.of("cgroup.memory", "cgroup.cpu", "cgroup.pids")) {
      Path cg = Path.of(saved.extra().get(key));
      await().atMost(Duration.ofSeconds(10)).until(() -> !Files.exists(cg));
    }
  }

  // ------------------------------------------------------------------------------------------

  private Vm boot(QemuHypervisor hv, String id, long incarnation) throws Exception {
    return boot(hv, id, incarnation, 256);
  }

  /** The guest's MemTotal: what the balloon leaves it. */
  private static long memTotalKiB(AgentClient agent) throws Exception {
    return Long.parseLong(run(agent, "awk '/^MemTotal:/ {print $2}' /proc/meminfo").output().trim());
  }

  private Vm boot(QemuHypervisor hv, String id, long incarnation, int memoryMiB) throws Exception {
    Vm vm = hv.prepare(new VmSpec(id, incarnation, 1, memoryMiB, 0, stateRoot.resolve(id), Map.of()));
    vms.add(vm);
    vm.start(Duration.ofSeconds(30));
    assertTrue(Files.exists(vm.handle().stateDir().resolve(VmHandle.FILE_NAME)));
    assertTrue(vm.handle().startTime() > 0);
    return vm;
  }

  private AgentClient connect(Vm vm) {
    AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    clients.add(c);
    return c;
  }

  /** Writes raw bytes as a host would; with {@code awaitClose}, waits for the agent to give up on them. */
  /** One host session that writes {@code bytes} (0xff-filled) and leaves. */
  private static void rawSession(Vm vm, byte[] bytes) throws Exception {
    java.util.Arrays.fill(bytes, (byte) 0xff);
    try (var ch = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
      ch.connect(java.net.UnixDomainSocketAddress.of(vm.handle().agentSocket()));
      ch.write(java.nio.ByteBuffer.wrap(bytes));
    }
  }

  private static String imageKernel() throws IOException {
    return imageProperty("kernel");
  }

  private static String imageProperty(String key) throws IOException {
    for (String l : Files.readAllLines(config.imageDir().resolve("image.properties"))) {
      if (l.startsWith(key + "=")) return l.substring(key.length() + 1);
    }
    return "";
  }
}
