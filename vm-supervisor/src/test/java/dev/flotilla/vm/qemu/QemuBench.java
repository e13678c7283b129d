package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Figures for scripts/bench-qemu.sh (no pass/fail): boot-to-agent-ready (connect + handshake)
 * through the driver (jailed, own uid and cgroups; the default image as the guest's root: its erofs
 * disk, a writable ext4 disk, the config disk) vs the same driver booting the initramfs alone
 * ({@code rootfs=initramfs}: what the image's disks cost is the difference) vs the initramfs-only
 * QEMU command started bare as root (what the jail costs); QEMU and guest agent RSS; QMP pause and
 * resume latency; QEMU's CPU time to ready, which other load on the host does not inflate. The
 * three kinds alternate so that load from elsewhere hits all of them.
 *
 * <p>Args: boots stateRoot [otherImageDir]. With otherImageDir (a guest image built by build.sh
 * with another JDK), it compares only the two images instead, through the driver with
 * {@code rootfs=initramfs} (no disks: the boot and the agent's start), one boot on each in turn.
 */
public final class QemuBench {
  private static final Duration READY = Duration.ofSeconds(120);

  public static void main(String[] args) throws Exception {
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 5;
    Path root = Path.of(args.length > 1 ? args[1] : Files.createTempDirectory("fl-qbench").toString());
    QemuConfig config = TestQemu.config(root.resolve("driver"));
    if (!config.imageBuilt()) throw new IllegalStateException("no guest image in " + config.imageDir());
    QemuHypervisor hv = TestQemu.hypervisor(config);
    boolean kvm = HostProbe.accel(config).kvm();
    System.out.printf("accelerator: %s (%s), %d boots of each kind, 1 vCPU, 256 MiB%n",
        kvm ? "KVM" : "TCG", HostProbe.accel(config).reason(), n);

    if (args.length > 2) {
      compareImages(n, root, hv, config, Path.of(args[2]));
      return;
    }
    List<Double> driver = new ArrayList<>();
    List<Double> initramfs = new ArrayList<>();
    List<Double> bare = new ArrayList<>();
    List<Double> qemuRss = new ArrayList<>();
    List<Double> qemuCpu = new ArrayList<>();
    List<Double> agentRss = new ArrayList<>();
    List<Double> pause = new ArrayList<>();
    List<Double> resume = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      // through the driver: prepare + start + connect + handshake
      String id = "d" + i;
      long t0 = System.nanoTime();
      Vm vm = hv.prepare(new VmSpec(id, 1, 1, 256, 0, root.resolve(id), Map.of()));
      try {
        vm.start(Duration.ofSeconds(30));
        try (AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10))) {
          GuestInfo info = c.handshake(id, 1, READY).get();
          driver.add(ms(System.nanoTime() - t0));
          qemuCpu.add(cpuMillis(vm.handle().pid()));
          qemuRss.add(rssKb(Files.readString(Path.of("/proc/" + vm.handle().pid() + "/status"))) / 1024.0);
          agentRss.add(rssKb(run(c, "cat /proc/" + info.agentPid() + "/status")) / 1024.0);
          for (int k = 0; k < 3; k++) {
            long p0 = System.nanoTime();
            vm.pause();
            pause.add(ms(System.nanoTime() - p0));
            long r0 = System.nanoTime();
            vm.resume();
            resume.add(ms(System.nanoTime() - r0));
          }
        }
      } finally {
        vm.stop(Duration.ofSeconds(5));
        vm.destroy();
        hv.releaseSandbox(id);
      }

      // through the driver, no disks: the tenant's processes in the initramfs, as before images
      String iid = "i" + i;
      long i0 = System.nanoTime();
      Vm ivm = hv.prepare(new VmSpec(iid, 1, 1, 256, 0, root.resolve(iid), Map.of(QemuHypervisor.ROOTFS_OPTION, "initramfs")));
      try {
        ivm.start(Duration.ofSeconds(30));
        try (AgentClient c = AgentClients.connect(ivm.agentAddress(), Duration.ofSeconds(10))) {
          c.handshake(iid, 1, READY).get();
          initramfs.add(ms(System.nanoTime() - i0));
        }
      } finally {
        ivm.stop(Duration.ofSeconds(5));
        ivm.destroy();
        hv.releaseSandbox(iid);
      }

      // bare: the initramfs-only QEMU command, started directly as root with the host's paths (no
      // jail, no cgroup, no console reader): what the jail costs is the difference
      String bid = "b" + i;
      QemuVm template = (QemuVm) hv.prepare(new VmSpec(bid, 1, 1, 256, 0, root.resolve(bid),
          Map.of(QemuHypervisor.ROOTFS_OPTION, "initramfs")));
      Path dir = template.handle().stateDir();
      List<String> bareCmd = template.command().stream()
          .map(a -> a.replace(QemuJail.KERNEL, config.kernel().toString())
              .replace(QemuJail.INITRAMFS, config.initramfs().toString())
              .replace("path=" + QemuJail.RUN + "/", "path=" + dir.resolve("run") + "/")
              .replace("wait=on", "wait=off"))
          .toList();
      long b0 = System.nanoTime();
      Process p = new ProcessBuilder(bareCmd).directory(dir.toFile())
          .redirectErrorStream(true).redirectOutput(new File(dir.resolve("qemu.log").toString())).start();
      try (AgentClient c = AgentClients.connect(new AgentAddress(template.handle().agentSocket()).withSecret(template.agentAddress().secret()), Duration.ofSeconds(30))) {
        c.handshake(bid, 1, READY).get();
        bare.add(ms(System.nanoTime() - b0));
        qemuCpu.add(cpuMillis(p.pid()));
      } finally {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
        template.destroy();
        hv.releaseSandbox(bid);
      }
      System.out.printf("boot %d: driver with image disk %.0f ms, driver initramfs only %.0f ms, bare %.0f ms%n", i + 1,
          driver.get(i), initramfs.get(i), bare.get(i));
    }
    report("create-to-ready, driver, image disk (ms)", driver);
    report("create-to-ready, driver, initramfs (ms)", initramfs);
    report("boot-to-agent-ready, bare QEMU (ms)", bare);
    report("QEMU CPU time to ready, both (ms)", qemuCpu);
    report("QEMU RSS after ready (MiB)", qemuRss);
    report("guest agent RSS in the guest (MiB)", agentRss);
    report("pause, QMP stop (ms)", pause);
    report("resume, QMP cont (ms)", resume);
  }

  private static void compareImages(int n, Path root, QemuHypervisor hv, QemuConfig config, Path other) throws Exception {
    QemuConfig otherConfig = new QemuConfig(config.qemuBinary(), other, config.accel(), root.resolve("other"));
    // The same test id ranges as hv's: safe because one VM runs at a time and each is released.
    QemuHypervisor hvOther = TestQemu.hypervisor(otherConfig);
    String load = Files.readString(Path.of("/proc/loadavg")).trim();
    List<Double> a = new ArrayList<>();
    List<Double> b = new ArrayList<>();
    List<Double> cpuA = new ArrayList<>();
    List<Double> cpuB = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      for (int k = 0; k < 2; k++) {
        boolean first = (i + k) % 2 == 0;
        String id = (first ? "a" : "b") + i;
        QemuHypervisor h = first ? hv : hvOther;
        long t0 = System.nanoTime();
        Vm vm = h.prepare(new VmSpec(id, 1, 1, 256, 0, root.resolve(id), Map.of(QemuHypervisor.ROOTFS_OPTION, "initramfs")));
        try {
          vm.start(Duration.ofSeconds(30));
          try (AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10))) {
            c.handshake(id, 1, READY).get();
            (first ? a : b).add(ms(System.nanoTime() - t0));
            (first ? cpuA : cpuB).add(cpuMillis(vm.handle().pid()));
          }
        } finally {
          vm.stop(Duration.ofSeconds(5));
          vm.destroy();
          h.releaseSandbox(id);
        }
      }
      System.out.printf("boot %d: %.0f ms, %.0f ms%n", i + 1, a.get(i), b.get(i));
    }
    System.out.printf("/proc/loadavg before: %s; after: %s%n", load, Files.readString(Path.of("/proc/loadavg")).trim());
    report("create-to-ready, " + imageName(config.imageDir()) + " (ms)", a);
    report("create-to-ready, " + imageName(other) + " (ms)", b);
    report("QEMU CPU time to ready, " + imageName(config.imageDir()) + " (ms)", cpuA);
    report("QEMU CPU time to ready, " + imageName(other) + " (ms)", cpuB);
  }

  private static String imageName(Path dir) throws java.io.IOException {
    String jdk = "?";
    String archive = "?";
    for (String l : Files.readAllLines(dir.resolve("image.properties"))) {
      if (l.startsWith("jdk=")) jdk = l.substring(4);
      if (l.startsWith("archive=")) archive = l.substring(8).split(" ")[0];
    }
    return "JDK " + jdk + " + " + archive;
  }

  private static void report(String what, List<Double> xs) {
    List<Double> s = new ArrayList<>(xs);
    Collections.sort(s);
    System.out.printf("%-60s p50 %8.1f  p90 %8.1f  (n=%d, min %.1f, max %.1f)%n", what, pct(s, 50), pct(s, 90),
        s.size(), s.get(0), s.get(s.size() - 1));
  }

  private static double pct(List<Double> sorted, int p) {
    int i = (int) Math.ceil(p / 100.0 * sorted.size()) - 1;
    return sorted.get(Math.max(0, Math.min(sorted.size() - 1, i)));
  }

  private static double ms(long nanos) {
    return nanos / 1e6;
  }

  /** utime + stime of a process: what a boot costs, whatever else the host is running. */
  private static double cpuMillis(long pid) throws java.io.IOException {
    String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
    String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
    return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10.0; // USER_HZ = 100
  }

  private static long rssKb(String status) {
    for (String l : status.split("\n")) {
      if (l.startsWith("VmRSS:")) return Long.parseLong(l.replaceAll("[^0-9]", ""));
    }
    return -1;
  }

  private static String run(AgentClient c, String script) throws Exception {
    return TestAgent.run(c, script).output();
  }

}
