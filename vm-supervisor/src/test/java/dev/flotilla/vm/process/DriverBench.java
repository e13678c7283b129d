package dev.flotilla.vm.process;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Figures for scripts/bench-driver.sh (no assertions): spawn-to-agent-ready through the process
 * driver vs the same agent command started bare, exec round trip of {@code true}, and agent RSS.
 * Args: stateRoot agentJar spawnIterations execIterations. Everything it starts it kills, also on failure.
 */
public final class DriverBench {
  private static final Duration T = Duration.ofSeconds(30);
  /** The sandboxes' CPU quota: 1 vCPU throttles the agent JVM's multi-threaded start-up. */
  private static final int VCPUS = Integer.getInteger("bench.vcpus", 1);

  public static void main(String[] args) throws Exception {
    Path root = Path.of(args[0]);
    Path jar = Path.of(args[1]);
    int spawns = Integer.parseInt(args[2]);
    int execs = Integer.parseInt(args[3]);
    int warmup = 3;
    ProcessHypervisorConfig config = ProcessHypervisorConfig.of(jar, root).withCgroupParent("flotilla-bench")
        .withCgroups(!Boolean.getBoolean("bench.no-cgroups"));
    ProcessHypervisor hv = new ProcessHypervisor(config);
    ProcessHypervisor hvNoCds = new ProcessHypervisor(config.withClassDataArchive(false));
    System.out.println("host: " + hv.capabilities());
    java.util.Optional<Path> archive = AgentCds.archive(config);
    System.out.println("agent class-data archive: " + archive.map(Path::toString).orElse("none"));

    List<Double> driver = new ArrayList<>();
    List<Double> driverNoCds = new ArrayList<>();
    List<Double> bare = new ArrayList<>();
    List<Double> bareNoCds = new ArrayList<>();
    List<Double> rss = new ArrayList<>();
    for (int i = 0; i < spawns + warmup; i++) {
      double d = driverSpawn(hv, root, "bench-d-" + i, i >= warmup ? rss : null);
      double b = bareSpawn(config, archive, root.resolve("bare-" + i));
      double dn = driverSpawn(hvNoCds, root, "bench-n-" + i, null);
      double bn = bareSpawn(config, java.util.Optional.empty(), root.resolve("bare-n-" + i));
      if (i >= warmup) {
        driver.add(d);
        bare.add(b);
        driverNoCds.add(dn);
        bareNoCds.add(bn);
      }
    }
    List<Double> exec = execRoundTrips(hv, root, execs, warmup * 10);
    System.out.println();
    System.out.printf("sandboxes with %d vCPU quota, 256 MiB; host has %d CPUs%n", VCPUS, Runtime.getRuntime().availableProcessors());
    System.out.printf("%-52s %9s %9s %6s%n", "figure", "median", "p99", "n");
    print("spawn-to-agent-ready, process driver (ms)", driver);
    print("spawn-to-agent-ready, bare java -jar agent (ms)", bare);
    print("  same, without the class-data archive: driver", driverNoCds);
    print("  same, without the class-data archive: bare", bareNoCds);
    print("exec round trip of `true` (exec+wait, ms)", exec);
    print("agent VmRSS in the sandbox after ready (MiB)", rss);
    System.out.printf("driver overhead over bare, median: %.1f ms%n", median(driver) - median(bare));
  }

  private static double driverSpawn(ProcessHypervisor hv, Path root, String id, List<Double> rss) throws Exception {
    VmSpec spec = new VmSpec(id, 1, VCPUS, 256, 0, root.resolve(id).resolve("1"), Map.of());
    long t0 = System.nanoTime();
    Vm vm = hv.prepare(spec);
    try {
      vm.start(T);
      try (AgentClient c = AgentClients.connect(vm.agentAddress(), T)) {
        c.handshake(id, 1, T).get(30, TimeUnit.SECONDS);
        double ms = (System.nanoTime() - t0) / 1e6;
        if (rss != null) rss.add(agentRssMiB(vm));
        return ms;
      }
    } finally {
      vm.kill();
      vm.exitFuture().get(30, TimeUnit.SECONDS);
      vm.destroy();
    }
  }

  private static double bareSpawn(ProcessHypervisorConfig config, java.util.Optional<Path> archive, Path dir) throws Exception {
    Files.createDirectories(dir);
    Path sock = dir.resolve("agent.sock");
    List<String> cmd = new ArrayList<>();
    cmd.add(config.javaPath().toString());
    cmd.addAll(config.jvmFlags());
    archive.ifPresent(a -> cmd.add("-XX:SharedArchiveFile=" + a));
    cmd.addAll(List.of("-jar", config.agentJar().toString(), "--listen", "unix:" + sock, "--sandbox-id", "bare", "--incarnation", "1"));
    long t0 = System.nanoTime();
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("agent.log").toFile())
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
    try (AgentClient c = AgentClients.connect(new AgentAddress(sock), T)) {
      c.handshake("bare", 1, T).get(30, TimeUnit.SECONDS);
      return (System.nanoTime() - t0) / 1e6;
    } finally {
      p.destroyForcibly();
      p.waitFor(30, TimeUnit.SECONDS);
      Files.deleteIfExists(sock);
      Files.deleteIfExists(dir.resolve("agent.log"));
      Files.deleteIfExists(dir);
    }
  }

  private static List<Double> execRoundTrips(ProcessHypervisor hv, Path root, int n, int warmup) throws Exception {
    VmSpec spec = new VmSpec("bench-exec", 1, 1, 256, 0, root.resolve("bench-exec").resolve("1"), Map.of());
    Vm vm = hv.prepare(spec);
    List<Double> out = new ArrayList<>();
    try {
      vm.start(T);
      try (AgentClient c = AgentClients.connect(vm.agentAddress(), T)) {
        c.handshake("bench-exec", 1, T).get(30, TimeUnit.SECONDS);
        OutputSink drop = new OutputSink() {
          @Override
          public void onData(Channel channel, byte[] data, Runnable release) {
            release.run();
          }

          @Override
          public void onEnd(Channel channel) {}
        };
        for (int i = 0; i < n + warmup; i++) {
          String id = "e" + i;
          long t0 = System.nanoTime();
          c.exec(ExecRequest.of(id, "true"), drop, T).get(30, TimeUnit.SECONDS);
          c.waitProcess(id, T).get(30, TimeUnit.SECONDS);
          if (i >= warmup) out.add((System.nanoTime() - t0) / 1e6);
        }
      }
    } finally {
      vm.kill();
      vm.exitFuture().get(30, TimeUnit.SECONDS);
      vm.destroy();
    }
    return out;
  }

  private static double agentRssMiB(Vm vm) throws Exception {
    for (long pid : vm.pids()) {
      String[] argv = Files.readString(Path.of("/proc/" + pid + "/cmdline")).split("\0");
      if (argv.length > 0 && argv[0].endsWith("/java")) {
        for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
          if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
        }
      }
    }
    return Double.NaN;
  }

  private static double median(List<Double> xs) {
    return percentile(xs, 50);
  }

  private static double percentile(List<Double> xs, double p) {
    List<Double> s = new ArrayList<>(xs);
    Collections.sort(s);
    int idx = (int) Math.ceil(p / 100.0 * s.size()) - 1;
    return s.get(Math.max(0, Math.min(s.size() - 1, idx)));
  }

  private static void print(String name, List<Double> xs) {
    System.out.printf("%-52s %9.1f %9.1f %6d%n", name, median(xs), percentile(xs, 99), xs.size());
  }
}
