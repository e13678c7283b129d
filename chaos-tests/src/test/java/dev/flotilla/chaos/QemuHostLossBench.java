package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.api.v1.SandboxSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/**
 * Figures only (issue 12; no pass/fail, not run by CI): host-loss recovery of <b>qemu</b>
 * sandboxes on a 3-node cluster on this host, with VM templates (warmed on every node first)
 * against templates off ({@code template-cache = 0}), one cluster after the other in one run. Each
 * run creates {@code bench.sandboxes} qemu sandboxes (1 vCPU, 256 MiB, the default image), then
 * {@code bench.kills} times SIGKILLs the host of the node running most of them (its JVM and its
 * QEMUs, {@code killHost}) and times, from the kill, until every one of them answers an exec
 * through a survivor; the victim is restarted (and warmed again) before the next kill. The
 * recovery is the cluster's failure detection and downing plus the survivor's VM start, which is
 * where templates count.
 *
 * <pre>
 * mvn -B -ntp -o -pl chaos-tests -am verify -Dfuzz.smoke.skip=true -Dtest=none -Dit.test=QemuHostLossBench \
 *     -Dsurefire.failIfNoSpecifiedTests=false [-Dbench.sandboxes=3] [-Dbench.kills=2]
 * </pre>
 *
 * Needs the guest image (guest-image/build.sh); skipped without it. The clusters' directories are
 * removed afterwards (kept, with their logs printed, when it fails; {@code -Dchaos.keep=true} keeps them).
 */
@org.junit.jupiter.api.extension.ExtendWith(LogsOnFailure.class)
class QemuHostLossBench {
  private static final Duration BOUND = Duration.ofMinutes(3);
  private static final SandboxSpec SPEC = SandboxSpec.newBuilder().setDriver("qemu").setVcpus(1).setMemoryMib(256).build();

  @Test
  void hostLossRecoveryOfQemuSandboxesWithAndWithoutTemplates() throws IOException {
    assumeTrue(guestImage(), "no guest image in guest-image/out: run guest-image/build.sh");
    int sandboxes = Integer.getInteger("bench.sandboxes", 3);
    int kills = Integer.getInteger("bench.kills", 2);
    Map<String, List<Long>> recoveries = new LinkedHashMap<>();
    for (boolean templates : new boolean[] {true, false}) {
      recoveries.put(templates ? "templates (warmed on every node)" : "cold boots (template-cache = 0)", run(templates, sandboxes, kills));
    }
    System.out.println("================ host-loss recovery of qemu sandboxes (TCG on this host) ================");
    System.out.printf("3 nodes on one host, %d qemu sandboxes (1 vCPU, 256 MiB), %d host kills each; load %s%n", sandboxes, kills,
        Files.readString(Path.of("/proc/loadavg")).trim());
    recoveries.forEach((what, ms) -> System.out.printf("%-40s recovery (ms, kill to every affected sandbox answering an exec): %s;"
        + " median %d%n", what, ms, median(ms)));
    System.out.println("=========================================================================================");
  }

  private static List<Long> run(boolean templates, int sandboxes, int kills) throws IOException {
    String config = "flotilla.node.drivers.qemu.enabled = on\nflotilla.node.drivers.qemu.template-cache = " + (templates ? "4GiB" : "0") + "\n";
    List<Long> out = new ArrayList<>();
    try (TestCluster c = TestCluster.builder().name("qemu-host-loss-" + (templates ? "templates" : "cold")).nodes(3).sandboxes(0)
        .config(config).start()) {
      if (templates) {
        // one node at a time: template VMs of one shape have one cgroup name on a host
        for (int i = 1; i <= c.size(); i++) c.client(i).warmTemplate(1, 256, Duration.ofMinutes(5));
      }
      List<String> ids = new ArrayList<>();
      for (int k = 0; k < sandboxes; k++) {
        ids.add(c.client(1 + k % c.size()).create(SPEC, "qemu-host-loss-" + k, TestCluster.CALL).getId());
      }
      c.awaitRunningAndExec(ids, BOUND);
      for (int k = 0; k < kills; k++) {
        int victim = 1;
        List<String> affected = List.of();
        for (int i = 1; i <= c.size(); i++) {
          List<String> on = ChaosIT.livingOn(c, i, ids);
          if (on.size() > affected.size()) {
            victim = i;
            affected = on;
          }
        }
        long t0 = System.nanoTime();
        c.local.killHost(victim);
        List<CompletableFuture<Long>> each = new ArrayList<>();
        for (String id : affected) {
          each.add(CompletableFuture.supplyAsync(() -> {
            await("sandbox " + id + " answers again").atMost(BOUND).pollInterval(Duration.ofMillis(100)).until(() -> c.answersExec(id));
            return (System.nanoTime() - t0) / 1_000_000;
          }, c.probes));
        }
        long last = each.stream().mapToLong(CompletableFuture::join).max().orElse(0);
        System.out.printf("%s: kill %d of node %d, %d sandboxes on it, all answering again after %d ms%n",
            templates ? "templates" : "cold", k + 1, victim, affected.size(), last);
        out.add(last);
        c.local.restart(victim);
        c.awaitNode(victim, BOUND);
        if (templates) c.client(victim).warmTemplate(1, 256, Duration.ofMinutes(5));
      }
      for (String id : ids) c.anyLiveClient().delete(id, TestCluster.CALL);
    }
    return out;
  }

  private static long median(List<Long> ms) {
    List<Long> sorted = ms.stream().sorted().toList();
    return sorted.isEmpty() ? 0 : sorted.get((sorted.size() - 1) / 2);
  }

  private static boolean guestImage() {
    for (Path d = Path.of("").toAbsolutePath(); d != null; d = d.getParent()) {
      if (Files.isRegularFile(d.resolve("guest-image/out/vmlinux"))) return true;
    }
    return false;
  }
}
