package dev.flotilla.vm.process;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Figures of the process driver for scripts/bench-driver.sh (prints, asserts nothing):
 * spawn-to-agent-ready through the driver (prepare + start + connect + handshake) for a new sandbox
 * (its writable layer made) and for a restart (incarnation 2 over the same layer), against the same
 * agent started bare by the host's JVM; exec round trip of {@code true}; host memory (PSS of every
 * process of the container) and disk (the writable layer's allocated blocks and its file system's
 * used blocks) per idle sandbox. Args: spawns execs idleSandboxes [otherRuntime].
 *
 * <p>With otherRuntime (a sandbox runtime built by build-sandbox-runtime.sh with another JDK), it
 * first compares the agent's start on the two runtimes, alternating one spawn on each so that the
 * host's load falls on both alike: spawn-to-agent-ready of a new sandbox, median and p90. Everything
 * it starts, its TestSandboxes remove, also on failure.
 */
public final class DriverBench {
  private static final Duration T = Duration.ofSeconds(60);
  private static final int WARMUP = 2;

  public static void main(String[] args) throws Exception {
    int spawns = Integer.parseInt(args[0]);
    int execs = Integer.parseInt(args[1]);
    int idle = Integer.parseInt(args[2]);
    if (args.length > 3) compareRuntimes(spawns, Path.of(args[3]));
    try (TestSandboxes s = new TestSandboxes("flotilla-bench")) {
      System.out.println("host: " + s.hypervisor.capabilities());
      List<Double> fresh = new ArrayList<>();
      List<Double> restart = new ArrayList<>();
      List<Double> bare = new ArrayList<>();
      for (int i = 0; i < spawns + WARMUP; i++) {
        VmSpec spec = s.spec();
        double f = driverSpawn(s, spec);
        VmSpec again = new VmSpec(spec.sandboxId(), 2, spec.vcpus(), spec.memoryMiB(), spec.pidsLimit(),
            s.hypervisor.config().stateDirFor(spec.sandboxId(), 2), spec.options());
        double r = driverSpawn(s, again);
        s.hypervisor.releaseSandbox(spec.sandboxId());
        double b = bareSpawn(s, i);
        if (i >= WARMUP) {
          fresh.add(f);
          restart.add(r);
          bare.add(b);
        }
      }
      List<Double> exec = execRoundTrips(s, execs);

      List<Double> pss = new ArrayList<>();
      List<Double> layerAllocated = new ArrayList<>();
      List<Double> layerUsed = new ArrayList<>();
      List<Vm> idleVms = new ArrayList<>();
      for (int i = 0; i < idle; i++) {
        Vm vm = s.start(s.spec());
        s.connect(vm).handshake(vm.handle().sandboxId(), vm.handle().incarnation(), T).get(60, TimeUnit.SECONDS);
        idleVms.add(vm);
      }
      for (Vm vm : idleVms) {
        pss.add(pssMiB(vm.pids()));
        WritableLayer layer = s.layerOf(vm.handle().sandboxId());
        layerAllocated.add(allocatedBytes(layer.image()) / 1048576.0);
        var store = Files.getFileStore(layer.mountPoint());
        layerUsed.add((store.getTotalSpace() - store.getUnallocatedSpace()) / 1048576.0);
      }

      System.out.println();
      System.out.printf("sandboxes: 1 vCPU quota, 256 MiB, %d MiB writable layer; host has %d CPUs%n",
          s.hypervisor.config().defaultDiskMiB(), Runtime.getRuntime().availableProcessors());
      System.out.printf("%-62s %9s %9s %6s%n", "figure", "median", "max", "n");
      print("spawn-to-agent-ready, new sandbox (layer made) (ms)", fresh);
      print("spawn-to-agent-ready, restart over its layer (ms)", restart);
      print("spawn-to-agent-ready, bare host java -jar agent (ms)", bare);
      print("exec round trip of `true` (exec + wait, ms)", exec);
      print("host memory per idle sandbox: PSS of its processes (MiB)", pss);
      print("host disk per idle sandbox: layer image allocated (MiB)", layerAllocated);
      print("host disk per idle sandbox: layer file system used (MiB)", layerUsed);
      System.out.printf("driver overhead over bare, median: new %.1f ms, restart %.1f ms%n", median(fresh) - median(bare),
          median(restart) - median(bare));
    }
  }

  private static void compareRuntimes(int spawns, Path other) throws Exception {
    try (TestSandboxes a = new TestSandboxes("flotilla-bench"); TestSandboxes b = new TestSandboxes("flotilla-bench", other)) {
      String loadBefore = loadAverage();
      List<Double> ta = new ArrayList<>();
      List<Double> tb = new ArrayList<>();
      for (int i = 0; i < spawns + WARMUP; i++) {
        // Which goes first alternates too: a spawn right after another finds more of the host warm.
        for (TestSandboxes s : i % 2 == 0 ? List.of(a, b) : List.of(b, a)) {
          VmSpec spec = s.spec();
          double t = driverSpawn(s, spec);
          s.hypervisor.releaseSandbox(spec.sandboxId());
          if (i >= WARMUP) (s == a ? ta : tb).add(t);
        }
      }
      System.out.println();
      System.out.printf("agent start by runtime, one spawn on each in turn (/proc/loadavg before: %s; after: %s)%n", loadBefore,
          loadAverage());
      System.out.printf("%-62s %9s %9s %9s %6s%n", "spawn-to-agent-ready, new sandbox (ms)", "median", "p90", "max", "n");
      printRuntime(a, ta);
      printRuntime(b, tb);
      System.out.printf("median difference: %.1f ms%n", median(tb) - median(ta));
    }
  }

  private static void printRuntime(TestSandboxes s, List<Double> xs) throws Exception {
    Path dir = s.hypervisor.config().runtimeDir();
    java.util.Properties p = new java.util.Properties();
    try (var in = Files.newInputStream(dir.resolve("runtime.properties"))) {
      p.load(in);
    }
    String name = "JDK " + p.getProperty("jdk", "17 (before jdk= was recorded)") + " + " + p.getProperty("archive", "?");
    List<Double> sorted = new ArrayList<>(xs);
    Collections.sort(sorted);
    double p90 = sorted.get(Math.min(sorted.size() - 1, (int) Math.ceil(0.9 * sorted.size()) - 1));
    System.out.printf("  %-60s %9.1f %9.1f %9.1f %6d%n", name, median(xs), p90, Collections.max(xs), xs.size());
  }

  private static String loadAverage() throws Exception {
    return Files.readString(Path.of("/proc/loadavg")).trim();
  }

  private static double driverSpawn(TestSandboxes s, VmSpec spec) throws Exception {
    long t0 = System.nanoTime();
    Vm vm = s.start(spec);
    try (AgentClient c = AgentClients.connect(vm.agentAddress(), T)) {
      c.handshake(spec.sandboxId(), spec.incarnation(), T).get(60, TimeUnit.SECONDS);
      return (System.nanoTime() - t0) / 1e6;
    } finally {
      vm.kill();
      vm.exitFuture().get(60, TimeUnit.SECONDS);
      vm.destroy();
    }
  }

  /** The same agent jar and JVM flags, run by the host's own JVM (the runtime's java runs only under /.fl). */
  private static double bareSpawn(TestSandboxes s, int i) throws Exception {
    ProcessHypervisorConfig c = s.hypervisor.config();
    Path dir = Files.createDirectories(s.stateRoot.resolve("bare-" + i));
    Path sock = dir.resolve("agent.sock");
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.addAll(c.jvmFlags());
    cmd.addAll(List.of("-jar", c.runtimeDir().resolve("agent.jar").toString(), "--listen", "unix:" + sock,
        "--sandbox-id", "bare", "--incarnation", "1"));
    long t0 = System.nanoTime();
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("agent.log").toFile())
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
    try (AgentClient a = AgentClients.connect(new AgentAddress(sock), T)) {
      a.handshake("bare", 1, T).get(60, TimeUnit.SECONDS);
      return (System.nanoTime() - t0) / 1e6;
    } finally {
      p.destroyForcibly();
      p.waitFor(60, TimeUnit.SECONDS);
    }
  }

  private static List<Double> execRoundTrips(TestSandboxes s, int n) throws Exception {
    Vm vm = s.start(s.spec());
    AgentClient c = s.connect(vm);
    OutputSink drop = OutputSink.DISCARD;
    List<Double> out = new ArrayList<>();
    for (int i = 0; i < n + 20; i++) {
      String id = "e" + i;
      long t0 = System.nanoTime();
      c.exec(ExecRequest.of(id, "true"), drop, T).get(60, TimeUnit.SECONDS);
      c.waitProcess(id, T).get(60, TimeUnit.SECONDS);
      if (i >= 20) out.add((System.nanoTime() - t0) / 1e6);
    }
    vm.kill();
    vm.exitFuture().get(60, TimeUnit.SECONDS);
    vm.destroy();
    s.hypervisor.releaseSandbox(vm.handle().sandboxId());
    return out;
  }

  /** Proportional set size: shared pages (the runtime, the CDS archive) count once across sandboxes. */
  private static double pssMiB(List<Long> pids) throws Exception {
    long kib = 0;
    for (long pid : pids) {
      for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/smaps_rollup"))) {
        if (line.startsWith("Pss:")) kib += Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return kib / 1024.0;
  }

  private static long allocatedBytes(Path file) throws Exception {
    Process p = new ProcessBuilder("stat", "-c", "%b %B", file.toString()).start();
    String[] f = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim().split(" ");
    p.waitFor();
    return Long.parseLong(f[0]) * Long.parseLong(f[1]);
  }

  private static double median(List<Double> xs) {
    List<Double> s = new ArrayList<>(xs);
    Collections.sort(s);
    int n = s.size();
    return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
  }

  private static void print(String name, List<Double> xs) {
    System.out.printf("%-62s %9.1f %9.1f %6d%n", name, median(xs), Collections.max(xs), xs.size());
  }
}
