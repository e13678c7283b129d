package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.TestSandboxes;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Figures for scripts/bench-resize.sh (no pass/fail): how long {@code Vm.resize} takes, for one
 * running sandbox of each driver, resized back and forth N times. process: memory 256 <-> 320 MiB
 * and 1 <-> 2 vCPUs (runc events + runc update). qemu: memory 384 -> 256 MiB (the guest inflates its
 * balloon by 128 MiB, QEMU's cgroup lowered after) and back (cgroup raised first, balloon deflated);
 * the call returns once QMP's query-balloon reports the target. What the control plane adds on top
 * (two ledger asks, the entity's ask, one persisted event) is a few milliseconds.
 */
public final class ResizeBench {

  public static void main(String[] args) throws Exception {
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 10;
    Path root = Path.of(args.length > 1 ? args[1] : Files.createTempDirectory("fl-rbench").toString());
    List<Double> processGrow = new ArrayList<>();
    List<Double> processShrink = new ArrayList<>();
    try (TestSandboxes s = new TestSandboxes("flotilla-bench")) {
      Vm vm = s.start(s.spec(256, 0));
      s.connect(vm).close();
      for (int i = 0; i < n; i++) {
        processGrow.add(timed(() -> vm.resize(2, 320)));
        processShrink.add(timed(() -> vm.resize(1, 256)));
      }
    }
    System.out.printf("process: resize to 2 vCPUs/320 MiB p50 %.1f ms (min %.1f, max %.1f), back to 1/256 p50 %.1f ms (min %.1f, max %.1f), n=%d%n",
        p50(processGrow), min(processGrow), max(processGrow), p50(processShrink), min(processShrink), max(processShrink), n);

    QemuConfig config = TestQemu.config(root.resolve("driver"));
    if (!config.imageBuilt()) throw new IllegalStateException("no guest image in " + config.imageDir());
    QemuHypervisor hv = TestQemu.hypervisor(config);
    List<Double> shrink = new ArrayList<>();
    List<Double> grow = new ArrayList<>();
    Vm vm = hv.prepare(new VmSpec("rb", 1, 1, 384, 0, root.resolve("rb"), Map.of()));
    try {
      vm.start(Duration.ofSeconds(30));
      try (AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10))) {
        c.handshake("rb", 1, Duration.ofSeconds(120)).get(); // booted: the guest's balloon driver is there
        for (int i = 0; i < n; i++) {
          shrink.add(timed(() -> vm.resize(1, 256)));
          grow.add(timed(() -> vm.resize(1, 384)));
        }
      }
    } finally {
      vm.kill();
      vm.exitFuture().get(20, TimeUnit.SECONDS);
      vm.destroy();
    }
    System.out.printf("qemu (%s): balloon 384 -> 256 MiB p50 %.1f ms (min %.1f, max %.1f), 256 -> 384 MiB p50 %.1f ms (min %.1f, max %.1f), n=%d%n",
        HostProbe.accel(config).kvm() ? "KVM" : "TCG", p50(shrink), min(shrink), max(shrink), p50(grow), min(grow), max(grow), n);
  }

  interface Step {
    void run() throws Exception;
  }

  static double timed(Step s) throws Exception {
    long t0 = System.nanoTime();
    s.run();
    return (System.nanoTime() - t0) / 1e6;
  }

  static double p50(List<Double> xs) {
    List<Double> s = new ArrayList<>(xs);
    Collections.sort(s);
    return s.get(s.size() / 2);
  }

  static double min(List<Double> xs) {
    return Collections.min(xs);
  }

  static double max(List<Double> xs) {
    return Collections.max(xs);
  }
}
