package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.v1.GuestDetails;
import dev.flotilla.agent.protocol.v1.StatsResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/** What the guest can say about itself, read from /proc and /sys. */
public final class GuestProbe {

  /** USER_HZ: the unit of /proc/[pid]/stat CPU times, 100 on every Linux ABI in use. */
  private static final long CLOCK_TICK_NANOS = 10_000_000L;

  private final Path proc;
  private final Path sys;
  private final long startNanos = System.nanoTime();
  private final long pageSize;
  /** {@link #details()}'s parts that cannot change while the agent runs, once read. */
  private volatile GuestDetails fixed;

  public GuestProbe() {
    this(Path.of("/proc"), Path.of("/sys"));
  }

  GuestProbe(Path proc, Path sys) {
    this.proc = proc;
    this.sys = sys;
    this.pageSize = pageSize();
  }

  /**
   * The details a handshake answers with. What cannot change while the agent runs (kernel, agent
   * version and pid, pid namespace, virtualization) is read once and kept: a template's agent
   * reads it before its save, and a clone answers its first handshake without reading half a dozen
   * files under /proc and /sys again (building the details took 64–108 ms of that handshake under
   * TCG, measured with the guest JVM's logs on; 16–40 ms once kept). The hostname and the
   * boot time are read every time: a clone's rebirth changes both (its hostname, and its clock).
   */
  public GuestDetails details() {
    GuestDetails f = fixed;
    if (f == null) {
      String release = read(proc.resolve("sys/kernel/osrelease"));
      String version = read(proc.resolve("sys/kernel/version"));
      f = GuestDetails.newBuilder()
          .setKernel((release + " " + version).trim())
          .setAgentVersion(agentVersion())
          .setPidNamespaceRoot(pidNamespaceRoot())
          .setProtocolVersion(AgentProtocol.VERSION)
          .setAgentPid(ProcessHandle.current().pid())
          .setVirtualization(virtualization())
          .build();
      fixed = f;
    }
    return f.toBuilder()
        .setHostname(hostname())
        .setBootTimeUnixMs(bootTimeMillis())
        .build();
  }

  static String agentVersion() {
    String v = GuestProbe.class.getPackage().getImplementationVersion();
    return v == null ? "dev" : v;
  }

  private String hostname() {
    String h = read(proc.resolve("sys/kernel/hostname"));
    return h.isEmpty() ? System.getenv().getOrDefault("HOSTNAME", "") : h;
  }

  /**
   * True when the agent is PID 1, or when its parent is PID 1 of a pid namespace other than the
   * initial one (the driver runs the agent under tini in a fresh namespace). The initial namespace
   * is recognised by its kernel threads: there, and only there, pid 2 is {@code kthreadd}.
   */
  boolean pidNamespaceRoot() {
    if (ProcessHandle.current().pid() == 1) return true;
    String stat = read(proc.resolve("self/stat"));
    int close = stat.lastIndexOf(')');
    if (close < 0) return false;
    String[] f = stat.substring(close + 2).split(" ");
    if (f.length < 2 || !f[1].equals("1")) return false;
    return !read(proc.resolve("2/comm")).equals("kthreadd");
  }

  /**
   * "kvm" when the kernel has KVM's paravirtual clock (only a KVM guest does); "qemu" for QEMU
   * without KVM (TCG), known from DMI or — on a microvm, which has no DMI tables — from the OEM id
   * of QEMU's ACPI tables ("BOCHS" / "BXPC"); another vendor from DMI; "vm" for a hypervisor we
   * cannot name (the CPU's hypervisor flag); else "none". Under the process driver this describes
   * the host machine, which is what the sandbox shares.
   */
  String virtualization() {
    String vendor = read(sys.resolve("class/dmi/id/sys_vendor")).toLowerCase(Locale.ROOT);
    String product = read(sys.resolve("class/dmi/id/product_name")).toLowerCase(Locale.ROOT);
    String clocks = read(sys.resolve("devices/system/clocksource/clocksource0/available_clocksource"));
    if ((" " + clocks + " ").contains(" kvm-clock ")) return "kvm";
    if (vendor.contains("qemu") || product.contains("qemu") || qemuAcpi()) return "qemu";
    boolean hypervisorFlag = cpuHasHypervisorFlag();
    if (product.contains("kvm") || vendor.contains("kvm")) return "kvm";
    if (hypervisorFlag) {
      if (vendor.contains("amazon")) return "amazon";
      if (vendor.contains("google")) return "google";
      if (vendor.contains("microsoft")) return "microsoft";
      if (vendor.contains("xen") || product.contains("hvm domu")) return "xen";
      if (vendor.contains("vmware")) return "vmware";
      return "vm";
    }
    return "none";
  }

  /** QEMU's firmware writes OEM id "BOCHS " (bytes 10-15 of every ACPI table header). */
  private boolean qemuAcpi() {
    try (var in = Files.newInputStream(sys.resolve("firmware/acpi/tables/DSDT"))) {
      byte[] header = in.readNBytes(16);
      if (header.length < 16) return false;
      String oem = new String(header, 10, 6, StandardCharsets.ISO_8859_1);
      return oem.startsWith("BOCHS") || oem.startsWith("BXPC");
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  private boolean cpuHasHypervisorFlag() {
    try (var lines = Files.lines(proc.resolve("cpuinfo"), StandardCharsets.ISO_8859_1)) {
      return lines.filter(l -> l.startsWith("flags")).findFirst()
          .map(l -> (" " + l + " ").contains(" hypervisor ")).orElse(false);
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  private long bootTimeMillis() {
    try (var lines = Files.lines(proc.resolve("stat"), StandardCharsets.ISO_8859_1)) {
      return lines.filter(l -> l.startsWith("btime ")).findFirst()
          .map(l -> Long.parseLong(l.substring(6).trim()) * 1000).orElse(0L);
    } catch (IOException | RuntimeException e) {
      return 0;
    }
  }

  /**
   * Sums RSS and CPU time over every process visible in /proc: in a VM or a pid namespace with its
   * own /proc that is the sandbox; with the host's /proc it is the whole host. Processes that end
   * while being read are skipped.
   */
  public StatsResponse stats() {
    long rssPages = 0;
    long ticks = 0;
    int count = 0;
    try (DirectoryStream<Path> dirs = Files.newDirectoryStream(proc, p -> isPid(p.getFileName().toString()))) {
      for (Path dir : dirs) {
        String stat = read(dir.resolve("stat"));
        int close = stat.lastIndexOf(')');
        if (close < 0) continue;
        // Fields after "pid (comm) ": state is field 3, utime 14, stime 15, rss 24.
        String[] f = stat.substring(close + 2).split(" ");
        if (f.length < 22) continue;
        try {
          ticks += Long.parseLong(f[11]) + Long.parseLong(f[12]);
          rssPages += Long.parseLong(f[21]);
          count++;
        } catch (NumberFormatException ignored) {
          // a malformed line: skip the process
        }
      }
    } catch (IOException e) {
      // no /proc: report what we have
    }
    return StatsResponse.newBuilder()
        .setMemoryUsedBytes(rssPages * pageSize)
        .setMemoryTotalBytes(memoryTotal())
        .setCpuTimeNanos(ticks * CLOCK_TICK_NANOS)
        .setProcessCount(count)
        .setUptimeMillis((System.nanoTime() - startNanos) / 1_000_000)
        .build();
  }

  /** The cgroup memory limit when there is one (v2, then v1), else MemTotal. */
  long memoryTotal() {
    String cgroup = read(proc.resolve("self/cgroup"));
    for (String line : cgroup.split("\n")) {
      if (line.startsWith("0::")) {
        long v = parseLimit(read(sys.resolve("fs/cgroup" + line.substring(3)).resolve("memory.max")));
        if (v > 0) return v;
      }
    }
    long v1 = parseLimit(read(sys.resolve("fs/cgroup/memory/memory.limit_in_bytes")));
    long memTotal = memTotal();
    if (v1 > 0 && (memTotal == 0 || v1 < memTotal)) return v1;
    return memTotal;
  }

  private long memTotal() {
    for (String line : read(proc.resolve("meminfo")).split("\n")) {
      if (line.startsWith("MemTotal:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
      }
    }
    return 0;
  }

  private static long parseLimit(String s) {
    if (s.isEmpty() || s.equals("max")) return 0;
    try {
      return Long.parseLong(s);
    } catch (NumberFormatException e) {
      return 0;
    }
  }

  /** Derived from our own VmRSS (kB) and resident pages, so that 16k/64k-page kernels come out right. */
  private long pageSize() {
    try {
      long residentPages = Long.parseLong(read(proc.resolve("self/statm")).split(" ")[1]);
      for (String line : read(proc.resolve("self/status")).split("\n")) {
        if (line.startsWith("VmRSS:") && residentPages > 0) {
          long kb = Long.parseLong(line.replaceAll("[^0-9]", ""));
          long ps = kb * 1024 / residentPages;
          for (long candidate : new long[] {4096, 16384, 65536}) {
            if (Math.abs(ps - candidate) < candidate / 4) return candidate;
          }
        }
      }
    } catch (RuntimeException ignored) {
      // fall through
    }
    return 4096;
  }

  private static boolean isPid(String name) {
    if (name.isEmpty()) return false;
    for (int i = 0; i < name.length(); i++) if (!Character.isDigit(name.charAt(i))) return false;
    return true;
  }

  static String read(Path p) {
    try {
      return new String(Files.readAllBytes(p), StandardCharsets.UTF_8).trim();
    } catch (IOException | RuntimeException e) {
      return "";
    }
  }
}
