package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * Real sandboxes for tests: a process driver over the real agent jar, a state root of its own,
 * and a close() that kills every process the test started and removes what they left, pass or fail.
 */
public final class TestSandboxes implements AutoCloseable {
  private static final AtomicLong IDS = new AtomicLong();

  public final Path stateRoot;
  /** The driver; {@link #restartNode()} replaces it, as a node restarted on this host would. */
  public volatile ProcessHypervisor hypervisor;
  private final List<Vm> vms = new ArrayList<>();
  private final List<Long> extraPids = new ArrayList<>();
  private final List<AgentClient> clients = new ArrayList<>();
  private final List<dev.flotilla.vm.VmHandle> handles = new ArrayList<>();

  public TestSandboxes() throws IOException {
    this("flotilla-test");
  }

  /** With sandboxes' cgroups under {@code cgroupParent} (the benchmark's own, so its leftovers are told apart). */
  public TestSandboxes(String cgroupParent) throws IOException {
    this(cgroupParent, null);
  }

  /** With another sandbox runtime than the build's ({@code null}: the build's), as DriverBench compares two. */
  public TestSandboxes(String cgroupParent, Path runtimeDir) throws IOException {
    stateRoot = Files.createTempDirectory("flotilla-vm-test");
    ProcessHypervisorConfig c = config(stateRoot).withCgroupParent(cgroupParent);
    hypervisor = new ProcessHypervisor(runtimeDir == null ? c : c.withRuntimeDir(runtimeDir));
  }

  /** The driver's settings for tests: the runtime and default image the build made, cgroup parent flotilla-test. */
  public static ProcessHypervisorConfig config(Path stateRoot) {
    return ProcessHypervisorConfig.of(builtDir("flotilla.sandbox.runtime", "guest-image/build-sandbox-runtime.sh"),
        builtDir("flotilla.default.image", "guest-image/build-default-image.sh"), stateRoot).withCgroupParent("flotilla-test");
  }

  private static Path builtDir(String property, String script) {
    String p = System.getProperty(property);
    assertTrue(p != null, "system property " + property + " is not set (surefire sets it)");
    Path dir = Path.of(p).toAbsolutePath().normalize();
    assertTrue(Files.isDirectory(dir), dir + " is missing: run " + script + " (scripts/test.sh does)");
    return dir;
  }

  /** A copy of the runtime (hard links) whose agent jar is not a jar: an agent that cannot start. */
  public Path brokenRuntime() throws Exception {
    Path copy = stateRoot.resolve("broken-runtime");
    Process p = new ProcessBuilder("cp", "-al", hypervisor.config().runtimeDir().toString(), copy.toString()).inheritIO().start();
    assertTrue(p.waitFor() == 0, "cp -al of the runtime failed");
    Files.delete(copy.resolve("agent.jar"));
    Files.writeString(copy.resolve("agent.jar"), "not a jar");
    // Unlinked first: written in place, the hard-linked file would change the real runtime's stamp too.
    Files.delete(copy.resolve("runtime.properties"));
    Files.writeString(copy.resolve("runtime.properties"), "broken\n");
    return copy;
  }

  public static Path agentJar() {
    String p = System.getProperty("flotilla.agent.jar");
    assertTrue(p != null, "system property flotilla.agent.jar is not set (surefire sets it)");
    Path jar = Path.of(p).toAbsolutePath().normalize();
    assertTrue(Files.isReadable(jar), "guest agent jar missing: " + jar + " (build guest-agent first)");
    return jar;
  }

  public VmSpec spec(int memoryMiB, int pidsLimit) {
    String id = "sbx-" + ProcessHandle.current().pid() + "-" + IDS.incrementAndGet();
    return new VmSpec(id, 1, 1, memoryMiB, pidsLimit, hypervisor.config().stateDirFor(id, 1), Map.of());
  }


  public VmSpec spec() {
    return spec(256, 0);
  }

  /** A spec whose writable layer is {@code diskMiB} (the driver's option {@code disk-mib}). */
  public VmSpec spec(int memoryMiB, int pidsLimit, int diskMiB) {
    return spec(memoryMiB, pidsLimit).withOption(VmSpec.DISK_MIB, Integer.toString(diskMiB));
  }

  /**
   * A new driver over the same state root, as a node restarted on this host gets: it re-reads the
   * id range table and the runtime state a previous node JVM left.
   */
  public ProcessHypervisor restartNode() {
    hypervisor = new ProcessHypervisor(hypervisor.config());
    return hypervisor;
  }

  // ---------------------------------------------------------------- host-side views of a sandbox

  /** The agent's JVM among the container's host pids (not tini, whose arguments name the agent too). */
  public static long agentHostPid(Vm vm) {
    return vm.pids().stream()
        .filter(p -> argv(p).stream().findFirst().map(a -> a.equals(ProcessVm.IN_SANDBOX_RUNTIME + "/jre/bin/java")).orElse(false))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no agent JVM among the container's pids " + vm.pids()));
  }

  public static List<String> argv(long pid) {
    try {
      return List.of(Files.readString(Path.of("/proc/" + pid + "/cmdline")).split("\0"));
    } catch (IOException e) {
      return List.of();
    }
  }

  /** A field of /proc/PID/status ({@code Uid} gives real, effective, saved, fs). */
  public static List<String> status(long pid, String field) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
      if (line.startsWith(field + ":")) return List.of(line.substring(field.length() + 1).trim().split("\\s+"));
    }
    throw new AssertionError("no " + field + " in /proc/" + pid + "/status");
  }

  /** The container's cgroup in one v1 hierarchy (or the v2 tree) of this host. */
  public Path cgroupDir(Cgroups.Controller controller, Vm vm) {
    Path root = hypervisor.facts().cgroups().mount(controller)
        .orElseThrow(() -> new AssertionError("no " + controller + " cgroup on this host")).root();
    return root.resolve(hypervisor.config().cgroupParent()).resolve(containerId(vm));
  }

  public static String containerId(Vm vm) {
    return vm.handle().extra().get("container");
  }

  /** Every container in the driver's runtime state ({@code runc --root <stateRoot>/.runc list}). */
  public List<String> containers() throws Exception {
    Path root = hypervisor.config().stateRoot().resolve(".runc");
    if (!Files.isDirectory(root)) return List.of();
    Process p = new ProcessBuilder(hypervisor.config().ociRuntime().toString(), "--root", root.toString(), "list", "-q")
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0, "runc list failed: " + out);
    return out.lines().filter(l -> !l.isBlank()).toList();
  }

  /** Mount points at or below the driver's run root (the runtime's own bind mount included). */
  public List<Path> mountsUnderRunRoot() {
    return Mounts.mountPointsUnder(hypervisor.config().runRoot());
  }

  /** The host path of the sandbox's root file system, as the node mounted it. */
  public Path rootfsOnHost(Vm vm) {
    return rootfsOnHost(vm.handle().sandboxId(), vm.handle().incarnation());
  }

  /**
   * The same by sandbox and incarnation: a file the sandbox writes at {@code /name} is
   * {@code rootfsOnHost(..).resolve(name)} here (the node's state directory is not the sandbox's to see).
   */
  public Path rootfsOnHost(String sandboxId, long incarnation) {
    return ProcessVm.Places.of(hypervisor.config(), sandboxId, incarnation).rootfs();
  }

  /** The sandbox's writable layer: its image file (node-only) and where the node mounts it. */
  public WritableLayer layerOf(String sandboxId) {
    return ProcessVm.Places.layerOf(hypervisor.config(), sandboxId);
  }

  /** Prepares and starts a VM, tracked for cleanup. */
  public Vm start(VmSpec spec) throws Exception {
    Vm vm = hypervisor.prepare(spec);
    track(vm);
    vm.start(Duration.ofSeconds(30));
    return vm;
  }

  public Vm track(Vm vm) {
    synchronized (vms) {
      vms.add(vm);
    }
    return vm;
  }

  /** A VM started some other way (by a supervisor): adopted and killed at the end if still there. */
  public void trackHandle(dev.flotilla.vm.VmHandle handle) {
    synchronized (handles) {
      handles.add(handle);
    }
  }

  /** Processes started some other way (a supervisor) whose host pids must die at the end. */
  public void trackPids(List<Long> pids) {
    synchronized (extraPids) {
      extraPids.addAll(pids);
    }
  }

  public AgentClient connect(Vm vm) {
    AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(20));
    synchronized (clients) {
      clients.add(c);
    }
    c.handshake(vm.handle().sandboxId(), vm.handle().incarnation(), Duration.ofSeconds(10)).join();
    return c;
  }

  public record Result(String stdout, String stderr, ExitStatus status) {}

  /** Runs a command in the guest and collects everything. */
  public static Result run(AgentClient c, Duration deadline, String... argv) throws Exception {
    String id = "t-" + IDS.incrementAndGet();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    CompletableFuture<Void> outEnd = new CompletableFuture<>();
    CompletableFuture<Void> errEnd = new CompletableFuture<>();
    c.exec(ExecRequest.of(id, argv), new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {
        synchronized (out) {
          (channel == Channel.STDOUT ? out : err).writeBytes(data);
        }
        release.run();
      }

      @Override
      public void onEnd(Channel channel) {
        (channel == Channel.STDOUT ? outEnd : errEnd).complete(null);
      }
    }, deadline).get(deadline.toMillis(), TimeUnit.MILLISECONDS);
    ExitStatus st = c.waitProcess(id, deadline).get(deadline.toMillis() + 1000, TimeUnit.MILLISECONDS);
    CompletableFuture.allOf(outEnd, errEnd).completeOnTimeout(null, 5, TimeUnit.SECONDS).join();
    synchronized (out) {
      return new Result(out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8), st);
    }
  }

  /**
   * Starts {@code storm} (a shell script that exhausts the sandbox's pids) only once the agent has
   * the threads that exec needs (its reaper and the output pumps): a storm that starts at once
   * races them, and the exec that started it is then refused (RESOURCE_EXHAUSTED) and killed.
   */
  public void stormOnceTheAgentIsReady(AgentClient c, Vm vm, String storm) throws Exception {
    Path go = rootfsOnHost(vm).resolve("go");
    spawn(c, "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; " + storm);
    long agent = agentHostPid(vm);
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20))
        .until(() -> threadNames(agent).stream().filter(n -> n.startsWith("out-")).count() >= 2);
    Files.writeString(go, "");
  }

  /** The names of a host process's threads. */
  private static List<String> threadNames(long pid) throws IOException {
    try (var tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
      return tasks.map(t -> {
        try {
          return Files.readString(t.resolve("comm")).trim();
        } catch (IOException gone) {
          return "";
        }
      }).toList();
    }
  }

  /** Starts a command in the guest and does not wait for it. */
  public static void spawn(AgentClient c, String... argv) {
    String id = "s-" + IDS.incrementAndGet();
    c.exec(ExecRequest.of(id, argv), OutputSink.DISCARD, Duration.ofSeconds(10)).join();
  }

  public static boolean alive(long pid) {
    return Procfs.stat(pid).filter(s -> s.state() != 'Z').isPresent();
  }

  @Override
  public void close() {
    synchronized (clients) {
      clients.forEach(AgentClient::close);
    }
    List<Vm> all;
    synchronized (vms) {
      all = new ArrayList<>(vms);
    }
    synchronized (handles) {
      handles.forEach(h -> hypervisor.adopt(h).ifPresent(all::add));
    }
    for (Vm vm : all) {
      try {
        vm.resume(); // a paused (frozen) container dies only once thawed
      } catch (Exception e) {
        // not running or not paused
      }
      try {
        vm.kill();
        vm.exitFuture().get(15, TimeUnit.SECONDS);
      } catch (Exception e) {
        System.err.println("cleanup: " + vm.handle().sandboxId() + " did not exit: " + e);
      }
      vm.destroy();
    }
    synchronized (extraPids) {
      for (long pid : extraPids) ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
    }
    // Whatever another JVM (a stand-in node) or a failed start left in this driver's runtime state.
    try {
      for (String id : containers()) hypervisor.oci().delete(id);
    } catch (Exception e) {
      System.err.println("cleanup: containers: " + e);
    }
    // A fresh driver reads the id table as the last writer (maybe another JVM) left it.
    ProcessHypervisor fresh = new ProcessHypervisor(hypervisor.config());
    for (String sandbox : fresh.sandboxesWithLocalState()) fresh.releaseSandbox(sandbox);
    for (Path mp : mountsUnderRunRoot()) {
      try {
        Mounts.unmount(mp);
      } catch (IOException e) {
        System.err.println("cleanup: " + e.getMessage());
      }
    }
    NodeDirs.deleteTree(hypervisor.config().runRoot());
    try (Stream<Path> walk = Files.walk(stateRoot)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // best effort
    }
  }
}
