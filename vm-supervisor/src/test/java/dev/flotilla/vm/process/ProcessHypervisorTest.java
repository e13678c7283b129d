package dev.flotilla.vm.process;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The process driver against the real guest agent, in real namespaces and cgroups of this host. */
class ProcessHypervisorTest {
  private static final Duration T = Duration.ofSeconds(20);
  private TestSandboxes sandboxes;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  @Test
  void namespacesAndUserMappingApply() throws Exception {
    Vm vm = sandboxes.start(sandboxes.spec());
    AgentClient c = sandboxes.connect(vm);
    String hostName = Files.readString(Path.of("/proc/sys/kernel/hostname")).trim();

    var r = TestSandboxes.run(c, T, "sh", "-c",
        "echo pid=$$; echo init=$(cat /proc/1/comm); echo uidmap=$(cat /proc/self/uid_map); "
            + "echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '); "
            + "hostname sandbox-renamed && echo hostname=$(hostname); echo uid=$(id -u)");
    assertEquals(0, r.status().exitCode(), r.stderr());
    String out = r.stdout();
    long pid = Long.parseLong(value(out, "pid"));
    assertTrue(pid < 100, "a fresh pid namespace numbers from 1, got " + pid);
    String init = value(out, "init");
    boolean tini = sandboxes.hypervisor.facts().tini().isPresent();
    assertEquals(tini ? "tini" : "java", init, "PID 1 of the sandbox is its init, not the host's");
    assertEquals("lo", value(out, "ifaces").trim(), "only loopback in a fresh network namespace");
    assertEquals("sandbox-renamed", value(out, "hostname"));
    assertEquals(hostName, Files.readString(Path.of("/proc/sys/kernel/hostname")).trim(), "the host's name is untouched");
    assertEquals("0", value(out, "uid"));
    List<String> map = Arrays.asList(value(out, "uidmap").trim().split("\\s+"));
    long outside = sandboxes.hypervisor.sandboxRootHostUid();
    assertEquals("0", map.get(0));
    assertEquals(Long.toString(outside), map.get(1), "root inside maps to " + outside + " outside: " + map);
    if (outside == 0) {
      assertTrue(sandboxes.hypervisor.capabilities().warnings().stream().anyMatch(w -> w.contains("--map-root-user")),
          "falling back to --map-root-user must be warned about");
    } else {
      // the agent's host process really runs as the unprivileged uid
      long agentHostPid = agentHostPid(vm);
      assertEquals(outside, ((Number) Files.getAttribute(Path.of("/proc/" + agentHostPid), "unix:uid")).longValue());
    }
    assertEquals(1, vm.handle().incarnation());
    assertTrue(Procfs.isSameProcess(vm.handle().pid(), vm.handle().startTime()));
  }

  @Test
  void limitsAreWrittenAsReportedAndPidsAreEnforced() throws Exception {
    HypervisorCapabilities caps = sandboxes.hypervisor.capabilities();
    VmSpec spec = sandboxes.spec(200, 120);
    Vm vm = sandboxes.start(spec);
    AgentClient c = sandboxes.connect(vm);
    VmHandle h = VmHandle.load(spec.stateDir());
    assertEquals(vm.handle().pid(), h.pid());
    for (String limit : List.of("memory", "cpu", "pids")) {
      if (!caps.enforcedLimits().contains(limit)) {
        assertTrue(caps.warnings().stream().anyMatch(w -> w.toLowerCase().contains(limit)), "unenforced " + limit + " must be warned about");
        continue;
      }
      Path dir = Path.of(h.extra().get("cgroup." + limit));
      List<String> procs = Files.readAllLines(dir.resolve("cgroup.procs"));
      assertTrue(procs.contains(Long.toString(agentHostPid(vm))), limit + " cgroup holds the agent: " + procs);
      assertTrue(procs.contains(Long.toString(vm.handle().pid())), limit + " cgroup holds the sandbox root process");
      switch (limit) {
        case "memory" -> assertEquals(200L * 1024 * 1024, Long.parseLong(read(dir, "memory.limit_in_bytes", "memory.max")));
        case "cpu" -> assertTrue(read(dir, "cpu.cfs_quota_us", "cpu.max").startsWith("100000"));
        case "pids" -> assertEquals("120", read(dir, "pids.max", "pids.max"));
        default -> throw new AssertionError(limit);
      }
    }
    if (caps.enforcedLimits().contains("pids")) {
      // Short-lived children, so the agent (whose threads count too) gets its headroom back at once.
      Path pidsDir = Path.of(h.extra().get("cgroup.pids"));
      TestSandboxes.spawn(c, "sh", "-c", "n=0; while [ $n -lt 200 ]; do sleep 1 & n=$((n+1)); done; wait");
      await().atMost(T).until(() -> maxEvents(pidsDir) > 0);
      assertTrue(Long.parseLong(read(pidsDir, "pids.current", "pids.current")) <= 120);
    }
  }

  private static long maxEvents(Path pidsDir) throws Exception {
    for (String line : Files.readAllLines(pidsDir.resolve("pids.events"))) {
      if (line.startsWith("max ")) return Long.parseLong(line.substring(4).trim());
    }
    return 0;
  }

  @Test
  void memoryLimitIsEnforced() throws Exception {
    if (!sandboxes.hypervisor.capabilities().enforcedLimits().contains("memory")) {
      assertTrue(sandboxes.hypervisor.capabilities().warnings().stream().anyMatch(w -> w.contains("memory")));
      return;
    }
    Vm vm = sandboxes.start(sandboxes.spec(160, 0));
    AgentClient c = sandboxes.connect(vm);
    // tail keeps the endless "line" of /dev/zero in memory until the cgroup's OOM killer ends it
    var r = TestSandboxes.run(c, T, "tail", "/dev/zero");
    assertEquals(9, r.status().signal(), "killed by the OOM killer: " + r);
    assertEquals("ok\n", TestSandboxes.run(c, T, "echo", "ok").stdout(), "the agent itself survives");
  }

  @Test
  void stateDirectoryIsPrivateToTheNodeAndTheSandboxRoot() throws Exception {
    VmSpec spec = sandboxes.spec();
    sandboxes.start(spec);
    assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(spec.stateDir())));
    assertEquals(sandboxes.hypervisor.sandboxRootHostUid(), ((Number) Files.getAttribute(spec.stateDir(), "unix:uid")).longValue());
  }

  @Test
  void killOfTheAgentIsAnExitBySignal() throws Exception {
    Vm vm = sandboxes.start(sandboxes.spec());
    sandboxes.connect(vm);
    long agent = agentHostPid(vm);
    List<Long> before = vm.pids();
    ProcessHandle.of(agent).orElseThrow().destroyForcibly();
    VmExit exit = vm.exitFuture().get(20, TimeUnit.SECONDS);
    assertEquals(9, exit.signal(), exit.toString());
    assertTrue(exit.reason().contains("signal 9"), exit.reason());
    assertFalse(exit.requested());
    await().atMost(T).until(() -> before.stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void killOfTheWholeVmIsAnExitBySignalAndLeavesNothing() throws Exception {
    Vm vm = sandboxes.start(sandboxes.spec());
    AgentClient c = sandboxes.connect(vm);
    TestSandboxes.spawn(c, "sh", "-c", "sleep 300 & sleep 300");
    await().atMost(T).until(() -> vm.pids().size() >= 5);
    List<Long> before = vm.pids();
    ProcessHandle.of(vm.handle().pid()).orElseThrow().destroyForcibly();
    VmExit exit = vm.exitFuture().get(20, TimeUnit.SECONDS);
    assertEquals(9, exit.signal(), exit.toString());
    await().atMost(T).until(() -> before.stream().noneMatch(TestSandboxes::alive));
    String cg = vm.handle().extra().get("cgroup.pids");
    if (cg != null) await().atMost(T).until(() -> !Files.exists(Path.of(cg)));
  }

  @Test
  void pauseFreezesEveryProcessAndResumeContinues() throws Exception {
    VmSpec spec = sandboxes.spec();
    Vm vm = sandboxes.start(spec);
    AgentClient c = sandboxes.connect(vm);
    Path counter = spec.stateDir().resolve("counter");
    TestSandboxes.spawn(c, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > " + counter + ".tmp; mv " + counter + ".tmp " + counter + "; sleep 0.02; done");
    await().atMost(T).until(() -> count(counter) > 3);

    vm.pause();
    await().atMost(T).until(() -> frozen(vm));
    long frozenAt = count(counter);
    // several polls over half a second: the counter stands still
    await().during(Duration.ofMillis(600)).atMost(Duration.ofSeconds(3)).pollInterval(Duration.ofMillis(100))
        .until(() -> count(counter) == frozenAt);

    vm.resume();
    await().atMost(T).until(() -> count(counter) > frozenAt + 3);
    var r = TestSandboxes.run(c, T, "echo", "after-resume");
    assertEquals("after-resume\n", r.stdout());
  }

  @Test
  void adoptReattachesOnlyToTheSameProcess() throws Exception {
    VmSpec spec = sandboxes.spec();
    Vm vm = sandboxes.start(spec);
    VmHandle saved = VmHandle.load(spec.stateDir());
    Vm adopted = sandboxes.hypervisor.adopt(saved).orElseThrow();
    assertEquals(vm.handle().pid(), adopted.handle().pid());
    AgentClient c = sandboxes.connect(adopted);
    assertEquals("ok\n", TestSandboxes.run(c, T, "echo", "ok").stdout());
    assertFalse(sandboxes.hypervisor.adopt(saved.withProcess(saved.pid(), saved.startTime() + 1)).isPresent(), "other start time: not ours");
    // an adopted VM sees its exit too, though it is not our child
    vm.kill();
    VmExit exit = adopted.exitFuture().get(20, TimeUnit.SECONDS);
    assertTrue(exit.reason().length() > 0);
    assertFalse(sandboxes.hypervisor.adopt(saved).isPresent(), "gone: nothing to adopt");
  }

  @Test
  void stopEndsTheTreeWithinGrace() throws Exception {
    Vm vm = sandboxes.start(sandboxes.spec());
    AgentClient c = sandboxes.connect(vm);
    TestSandboxes.spawn(c, "sleep", "300");
    await().atMost(T).until(() -> vm.pids().size() >= 4);
    List<Long> before = vm.pids();
    vm.stop(Duration.ofSeconds(5));
    assertTrue(vm.exitFuture().isDone());
    assertTrue(vm.exitFuture().join().requested());
    await().atMost(T).until(() -> before.stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void startFailsCleanlyWhenTheAgentCannotRun() throws Exception {
    Path notAJar = Files.writeString(sandboxes.stateRoot.resolve("broken.jar"), "not a jar");
    var broken = new ProcessHypervisor(sandboxes.hypervisor.config().withAgentJar(notAJar));
    VmSpec spec = sandboxes.spec();
    Vm vm = sandboxes.track(broken.prepare(spec));
    AtomicReference<Exception> failure = new AtomicReference<>();
    try {
      vm.start(T);
    } catch (Exception e) {
      failure.set(e);
    }
    assertNotEquals(null, failure.get(), "a sandbox whose agent cannot start must fail to start");
    assertTrue(vm.exitFuture().isDone());
    assertFalse(TestSandboxes.alive(vm.handle().pid()) && Procfs.isSameProcess(vm.handle().pid(), vm.handle().startTime()));
  }

  // ---------------------------------------------------------------- helpers

  /** The agent's JVM (not tini, whose arguments name the agent too). */
  static long agentHostPid(Vm vm) {
    return vm.pids().stream()
        .filter(p -> {
          try {
            String[] argv = Files.readString(Path.of("/proc/" + p + "/cmdline")).split("\0");
            return argv.length > 0 && argv[0].endsWith("/java") && String.join(" ", argv).contains("flotilla-guest-agent");
          } catch (Exception e) {
            return false;
          }
        })
        .findFirst()
        .orElseThrow(() -> new AssertionError("no agent process among " + vm.pids()));
  }

  private static boolean frozen(Vm vm) throws Exception {
    String cg = vm.handle().extra().get("cgroup.freezer");
    if (cg != null) {
      Path d = Path.of(cg);
      if (Files.exists(d.resolve("freezer.state"))) return Files.readString(d.resolve("freezer.state")).trim().equals("FROZEN");
      return Files.readAllLines(d.resolve("cgroup.events")).contains("frozen 1");
    }
    return vm.pids().stream().allMatch(p -> Procfs.stat(p).map(s -> s.state() == 'T' || s.state() == 'Z').orElse(true));
  }

  private static long count(Path counter) {
    try {
      String s = Files.readString(counter).trim();
      return s.isEmpty() ? 0 : Long.parseLong(s);
    } catch (Exception e) {
      return 0;
    }
  }

  private static String read(Path dir, String v1, String v2) throws Exception {
    Path p = Files.exists(dir.resolve(v1)) ? dir.resolve(v1) : dir.resolve(v2);
    return Files.readString(p).trim();
  }

  private static String value(String out, String key) {
    for (String line : out.split("\n")) {
      if (line.startsWith(key + "=")) return line.substring(key.length() + 1);
    }
    throw new AssertionError("no " + key + "= in output:\n" + out);
  }
}
