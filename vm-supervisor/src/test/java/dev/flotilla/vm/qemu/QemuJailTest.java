package dev.flotilla.vm.qemu;

import static dev.flotilla.vm.qemu.TestAgent.run;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * What a running QEMU is allowed, seen from the host's /proc: two real microVMs of two sandboxes,
 * booted once for the class (TCG: seconds each), checked, then stopped by the last test, which
 * checks that nothing of them is left.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class QemuJailTest {
  private static final Duration BOOT = Duration.ofSeconds(90);
  /** The second VM's console cap: small, so that the test can overflow it in a second of output. */
  private static final long SMALL_CONSOLE = 64 * 1024;

  private static Path driverRoot;
  private static Path vmRoot;
  private static QemuConfig config;
  private static IdRangeAllocator ids;
  private static final Map<String, Vm> vms = new LinkedHashMap<>();
  private static final Map<String, AgentClient> agents = new LinkedHashMap<>();
  private static final Map<String, Duration> bootTimes = new LinkedHashMap<>();

  @BeforeAll
  static void bootTwoSandboxes() throws Exception {
    driverRoot = Files.createTempDirectory("fl-qjail-driver");
    vmRoot = Files.createTempDirectory("fl-qjail-vms");
    config = TestQemu.config(driverRoot);
    assumeTrue(config.imageBuilt(), "guest image not built in " + config.imageDir() + ": run guest-image/build.sh");
    ids = TestQemu.ids(driverRoot);
    // one allocator shared by two drivers, as a node shares it: one with a small console cap
    QemuHypervisor a = new QemuHypervisor(config, ids);
    QemuHypervisor b = new QemuHypervisor(config.withConsoleLogBytes(SMALL_CONSOLE), ids);
    CompletableFuture<Void> first = CompletableFuture.runAsync(() -> boot(a, "jail-a"));
    CompletableFuture<Void> second = CompletableFuture.runAsync(() -> boot(b, "jail-b"));
    first.get(3, TimeUnit.MINUTES);
    second.get(3, TimeUnit.MINUTES);
    System.out.println("cold boot to agent handshake, jailed, two at once on this host: " + bootTimes);
  }

  private static void boot(QemuHypervisor hv, String id) {
    try {
      long t0 = System.nanoTime();
      Vm vm = hv.prepare(new VmSpec(id, 1, 1, 256, 0, vmRoot.resolve(id), Map.of()));
      synchronized (vms) {
        vms.put(id, vm);
      }
      vm.start(Duration.ofSeconds(60));
      AgentClient agent = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
      synchronized (vms) {
        agents.put(id, agent);
      }
      agent.handshake(id, 1, BOOT).get();
      synchronized (vms) {
        bootTimes.put(id, Duration.ofNanos(System.nanoTime() - t0));
      }
    } catch (Exception e) {
      throw new IllegalStateException("boot of " + id + " failed", e);
    }
  }

  @AfterAll
  static void cleanUp() throws IOException {
    agents.values().forEach(AgentClient::close);
    for (Vm vm : vms.values()) {
      vm.kill();
      vm.exitFuture().orTimeout(20, TimeUnit.SECONDS).exceptionally(e -> null).join();
    }
    // whatever a failed test left, reaped as a restarted node would (QEMU, cgroups, state)
    if (vmRoot != null && Files.isDirectory(vmRoot)) {
      try (Stream<Path> files = Files.walk(vmRoot)) {
        for (Path h : files.filter(f -> f.getFileName().toString().equals(VmHandle.FILE_NAME)).toList()) {
          new QemuHypervisor(config, ids).reap(VmHandle.load(h.getParent()));
        }
      }
    }
    QemuJail.deleteTree(vmRoot);
    QemuJail.deleteTree(driverRoot);
  }

  @Test
  @Order(1)
  void qemuRunsAsItsSandboxsOwnUidNeverRoot() throws Exception {
    Set<Long> uids = new TreeSet<>();
    for (Vm vm : vms.values()) {
      long expected = ids.rangeOf(vm.handle().sandboxId()).orElseThrow().hostStart();
      Map<String, String> status = status(vm);
      // real, effective, saved and file-system ids
      assertEquals(List.of(expected, expected, expected, expected), numbers(status.get("Uid")), status.toString());
      assertEquals(List.of(expected, expected, expected, expected), numbers(status.get("Gid")), status.toString());
      assertEquals("", status.get("Groups"), "no supplementary groups");
      assertNotEquals(0, expected);
      uids.add(expected);
    }
    assertEquals(2, uids.size(), "two sandboxes, two uids: " + uids);
  }

  @Test
  @Order(2)
  void qemuHasSeccompNoNewPrivsAndNoCapabilities() throws Exception {
    for (Vm vm : vms.values()) {
      Map<String, String> status = status(vm);
      assertEquals("2", status.get("Seccomp"), "seccomp filter mode: " + status);
      assertEquals("1", status.get("NoNewPrivs"), status.toString());
      for (String caps : List.of("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")) {
        assertEquals("0000000000000000", status.get(caps), caps);
      }
    }
  }

  @Test
  @Order(3)
  void qemuIsInItsOwnCgroupsWithTheLimits() throws Exception {
    for (Vm vm : vms.values()) {
      Map<String, String> extra = vm.handle().extra();
      Map<String, String> procCgroups = new LinkedHashMap<>();
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(vm.handle().pid()), "cgroup"))) {
        String[] f = line.split(":", 3);
        for (String c : f[1].split(",")) procCgroups.put(c, f[2]);
      }
      String own = "/" + config.cgroupParent() + "/" + vm.handle().sandboxId() + "-1";
      for (String c : List.of("memory", "cpu", "pids")) {
        assertEquals(own, procCgroups.get(c), c + " cgroup of QEMU: " + procCgroups);
        assertTrue(Path.of(extra.get("cgroup." + c)).endsWith(own.substring(1)), extra.toString());
      }
      long memory = (256L + config.memoryOverheadMiB()) * 1024 * 1024;
      assertEquals(Long.toString(memory), read(extra.get("cgroup.memory"), "memory.limit_in_bytes"));
      assertEquals("100000", read(extra.get("cgroup.cpu"), "cpu.cfs_quota_us"), "one vCPU");
      assertEquals("100000", read(extra.get("cgroup.cpu"), "cpu.cfs_period_us"));
      assertEquals(Integer.toString(config.threadsLimit()), read(extra.get("cgroup.pids"), "pids.max"));
      assertTrue(Files.readString(Path.of(extra.get("cgroup.pids"), "cgroup.procs")).contains(Long.toString(vm.handle().pid())));
    }
  }

  @Test
  @Order(4)
  void qemuSeesOnlyItsJail() throws Exception {
    Vm a = vms.get("jail-a");
    Vm b = vms.get("jail-b");
    for (Vm vm : List.of(a, b)) {
      Vm other = vm == a ? b : a;
      Path root = Path.of("/proc", Long.toString(vm.handle().pid()), "root");
      // its mounts: the read-only jail root, its /dev, its run directory, its kernel and initramfs
      Set<String> mountPoints = new TreeSet<>();
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(vm.handle().pid()), "mountinfo"))) {
        mountPoints.add(line.split(" ")[4]);
      }
      assertEquals(new TreeSet<>(List.of("/", "/dev", "/run", "/vm/config", "/vm/disk", "/vm/image", "/vm/initramfs.cpio",
          "/vm/vmlinux")), mountPoints);
      // the image's and the config disk read-only, the sandbox's own disk its to write
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(vm.handle().pid()), "mountinfo"))) {
        String[] f = line.split(" ");
        List<String> opts = List.of(f[5].split(","));
        if (f[4].equals("/vm/image") || f[4].equals("/vm/config")) assertTrue(opts.contains("ro"), line);
        if (f[4].equals("/vm/disk")) assertTrue(opts.contains("rw") && opts.contains("nosuid") && opts.contains("noexec"), line);
      }
      for (String hidden : List.of("root", "etc/shadow", "etc", "home", "proc/1", "sys")) {
        assertFalse(Files.exists(root.resolve(hidden)), hidden + " is visible to QEMU");
      }
      for (Path host : List.of(driverRoot, vmRoot, other.handle().stateDir(), other.handle().stateDir().resolve("run"),
          vm.handle().stateDir())) {
        assertFalse(Files.exists(root.resolve(host.toString().substring(1))), host + " is visible to QEMU");
      }
      assertTrue(Files.isSameFile(root.resolve("run"), vm.handle().stateDir().resolve("run")), "its own run directory");
      try (Stream<Path> devices = Files.list(root.resolve("dev"))) {
        assertEquals(List.of("null", "urandom"), devices.map(p -> p.getFileName().toString()).sorted().toList(),
            "no /dev/kvm under TCG");
      }
      try (Stream<Path> run = Files.list(root.resolve("run"))) {
        assertEquals(List.of("agent.sock", "console.sock", "qmp.sock"), run.map(p -> p.getFileName().toString()).sorted().toList());
      }
      // and the node's files in its state directory are not in its run directory
      assertFalse(Files.exists(root.resolve("run/handle.properties")));
    }
    // nothing of the jails reached the host's mount table
    String hostMounts = Files.readString(Path.of("/proc/self/mountinfo"));
    assertFalse(hostMounts.contains(driverRoot.toString()), hostMounts);
    assertFalse(hostMounts.contains(vmRoot.toString()), hostMounts);
  }

  @Test
  @Order(5)
  void aJailedGuestRunsPausesAndResumesOverQmp() throws Exception {
    Vm vm = vms.get("jail-a");
    AgentClient agent = agents.get("jail-a");
    assertEquals("jailed\n", run(agent, "echo jailed").output());
    vm.pause();
    assertEquals("paused", ((QemuVm) vm).status(Duration.ofSeconds(5)));
    CompletableFuture<TestAgent.Result> during = CompletableFuture.supplyAsync(() -> {
      try {
        return run(agent, "echo after");
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
    await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(3)).until(() -> !during.isDone());
    vm.resume();
    assertEquals("running", ((QemuVm) vm).status(Duration.ofSeconds(5)));
    assertEquals("after\n", during.get(30, TimeUnit.SECONDS).output());
  }

  @Test
  @Order(6)
  void theConsoleLogIsCapped() throws Exception {
    Vm vm = vms.get("jail-b");
    Path log = vm.handle().stateDir().resolve("console.log");
    Path previous = vm.handle().stateDir().resolve("console.log.1");
    // ~200 KiB on the serial console, three times the cap, then a last line
    String line = "x".repeat(100);
    assertEquals(0, run(agents.get("jail-b"), "i=0; while [ $i -lt 2000 ]; do echo \"$i " + line + "\"; i=$((i+1)); done"
        + " > /dev/ttyS0; echo console-end-marker > /dev/ttyS0").status().exitCode());
    await().atMost(Duration.ofSeconds(30)).until(() -> ConsoleLog.tail(log, 4096).contains("console-end-marker"));
    assertTrue(Files.exists(previous), "rotated");
    assertTrue(Files.size(log) <= SMALL_CONSOLE / 2, "console.log " + Files.size(log));
    assertTrue(Files.size(previous) <= SMALL_CONSOLE / 2, "console.log.1 " + Files.size(previous));
    assertTrue(ConsoleLog.tail(log, 8192).contains("1999 " + line), "the newest lines are kept");
  }

  /** The boot's handshake fixed the node's secret in the guest: a handshake without it is refused. */
  @Test
  @Order(6)
  void theGuestAgentServesOnlyTheHolderOfItsNodesSecret() throws Exception {
    Vm vm = vms.get("jail-a");
    var address = vm.agentAddress();
    assertTrue(address.hasSecret(), "the node keeps a secret for every QEMU incarnation");
    synchronized (vms) {
      agents.remove("jail-a").close(); // the serial port serves one host connection at a time
    }
    try (AgentClient legacy = AgentClients.connect(new dev.flotilla.agent.protocol.client.AgentAddress(address.unixSocket()),
        Duration.ofSeconds(10))) {
      var e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class,
          () -> legacy.handshake("jail-a", 1, BOOT).get(30, TimeUnit.SECONDS));
      assertEquals(dev.flotilla.agent.protocol.client.AgentException.Code.PERMISSION_DENIED,
          ((dev.flotilla.agent.protocol.client.AgentException) e.getCause()).code(), e.toString());
    }
    AgentClient again = AgentClients.connect(address, Duration.ofSeconds(10));
    synchronized (vms) {
      agents.put("jail-a", again);
    }
    again.handshake("jail-a", 1, BOOT).get(30, TimeUnit.SECONDS);
  }

  @Test
  @Order(7)
  void stoppedVmsLeaveNoProcessCgroupMountOrFile() throws Exception {
    List<VmHandle> handles = new ArrayList<>();
    for (Vm vm : vms.values()) {
      // boot, exec, console flood: within guest RAM + overhead, the limit never hit
      String memory = vm.handle().extra().get("cgroup.memory");
      System.out.printf("%s: QEMU's cgroup peak %d MiB of %d MiB%n", vm.handle().sandboxId(),
          Long.parseLong(read(memory, "memory.max_usage_in_bytes")) >> 20, Long.parseLong(read(memory, "memory.limit_in_bytes")) >> 20);
      assertEquals("0", read(memory, "memory.failcnt"), "QEMU reached its memory limit");
      handles.add(vm.handle());
      vm.stop(Duration.ofSeconds(5));
      VmExit exit = vm.exitFuture().get(30, TimeUnit.SECONDS);
      assertTrue(exit.requested(), exit.toString());
      vm.destroy();
    }
    for (VmHandle h : handles) {
      assertFalse(ProcessHandle.of(h.pid()).map(ProcessHandle::isAlive).orElse(false), "QEMU " + h.pid() + " alive");
      for (String c : List.of("memory", "cpu", "pids", "freezer")) {
        String dir = h.extra().get("cgroup." + c);
        if (dir != null) assertFalse(Files.exists(Path.of(dir)), dir + " left");
      }
      assertFalse(Files.exists(h.stateDir()), h.stateDir() + " left");
    }
    assertFalse(Files.readString(Path.of("/proc/self/mountinfo")).contains(driverRoot.toString()));
    // the sandboxes keep their ranges until they are deleted: a restart gets the same uid
    assertEquals(2, ids.holders().size(), ids.holders().toString());
  }

  // ------------------------------------------------------------------------------------------

  private static Map<String, String> status(Vm vm) throws IOException {
    Map<String, String> out = new LinkedHashMap<>();
    for (String line : Files.readAllLines(Path.of("/proc", Long.toString(vm.handle().pid()), "status"))) {
      int colon = line.indexOf(':');
      if (colon > 0) out.put(line.substring(0, colon), line.substring(colon + 1).trim());
    }
    return out;
  }

  private static List<Long> numbers(String fields) {
    return Stream.of(fields.trim().split("\\s+")).map(Long::parseLong).toList();
  }

  private static String read(String dir, String file) throws IOException {
    return Files.readString(Path.of(dir, file)).trim();
  }
}
