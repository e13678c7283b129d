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
  public final ProcessHypervisor hypervisor;
  private final List<Vm> vms = new ArrayList<>();
  private final List<Long> extraPids = new ArrayList<>();
  private final List<AgentClient> clients = new ArrayList<>();
  private final List<dev.flotilla.vm.VmHandle> handles = new ArrayList<>();

  public TestSandboxes() throws IOException {
    stateRoot = Files.createTempDirectory("flotilla-vm-test");
    hypervisor = new ProcessHypervisor(config(stateRoot));
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

  /** Where a path inside a running sandbox's root is on the host (through its root's mount). */
  public Path hostPath(VmSpec spec, String inside) {
    return ProcessVm.Places.of(hypervisor.config(), spec.sandboxId(), spec.incarnation()).rootfs().resolve(inside.substring(1));
  }

  public VmSpec spec() {
    return spec(256, 0);
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

  /** Starts a command in the guest and does not wait for it. */
  public static void spawn(AgentClient c, String... argv) {
    String id = "s-" + IDS.incrementAndGet();
    c.exec(ExecRequest.of(id, argv), new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {
        release.run();
      }

      @Override
      public void onEnd(Channel channel) {}
    }, Duration.ofSeconds(10)).join();
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
    for (String sandbox : hypervisor.sandboxesWithLocalState()) hypervisor.releaseSandbox(sandbox);
    try {
      Mounts.unmount(hypervisor.config().runRoot().resolve("runtime"));
    } catch (IOException e) {
      System.err.println("cleanup: " + e.getMessage());
    }
    NodeDirs.deleteTree(hypervisor.config().runRoot());
    try (Stream<Path> walk = Files.walk(stateRoot)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // best effort
    }
  }
}
