package dev.flotilla.agent.guest.system;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Probes against fake /proc and /sys trees. */
class GuestProbeTest {

  @TempDir Path root;

  private Path write(String rel, String content) throws IOException {
    Path p = root.resolve(rel);
    Files.createDirectories(p.getParent());
    Files.writeString(p, content);
    return p;
  }

  private GuestProbe probe() {
    return new GuestProbe(root.resolve("proc"), root.resolve("sys"));
  }

  @Test
  void virtualizationFromDmiAndCpuFlags() throws IOException {
    assertEquals("none", probe().virtualization());
    write("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n");
    assertEquals("vm", probe().virtualization());
    // a microvm under TCG: no DMI, but QEMU's ACPI tables
    byte[] dsdt = new byte[36];
    System.arraycopy("DSDT".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1), 0, dsdt, 0, 4);
    System.arraycopy("BOCHS ".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1), 0, dsdt, 10, 6);
    java.nio.file.Files.createDirectories(root.resolve("sys/firmware/acpi/tables"));
    java.nio.file.Files.write(root.resolve("sys/firmware/acpi/tables/DSDT"), dsdt);
    assertEquals("qemu", probe().virtualization());
    write("sys/class/dmi/id/sys_vendor", "QEMU\n");
    assertEquals("qemu", probe().virtualization());
    // under KVM the guest kernel has KVM's clock
    write("sys/devices/system/clocksource/clocksource0/available_clocksource", "kvm-clock tsc acpi_pm \n");
    assertEquals("kvm", probe().virtualization());
  }

  @Test
  void detailsKeepWhatCannotChangeAndReadTheHostnameAndBootTimeEachTime() throws IOException {
    write("proc/sys/kernel/osrelease", "6.1.0\n");
    write("proc/sys/kernel/version", "#1 SMP\n");
    write("proc/sys/kernel/hostname", "fl-template\n");
    write("proc/stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n");
    GuestProbe probe = probe();
    var first = probe.details();
    assertEquals("6.1.0 #1 SMP", first.getKernel());
    assertEquals("fl-template", first.getHostname());
    assertEquals(1_700_000_000_000L, first.getBootTimeUnixMs());
    // a clone's rebirth: a new hostname and clock (so a new boot time); the kernel is the same one
    write("proc/sys/kernel/hostname", "fl-sb-1\n");
    write("proc/stat", "cpu  1 2 3\nbtime 1800000000\nprocesses 9\n");
    write("proc/sys/kernel/osrelease", "never read again\n");
    var second = probe.details();
    assertEquals("fl-sb-1", second.getHostname());
    assertEquals(1_800_000_000_000L, second.getBootTimeUnixMs());
    assertEquals("6.1.0 #1 SMP", second.getKernel(), "read once: a running kernel does not change");
    assertEquals(first.getVirtualization(), second.getVirtualization());
    assertEquals(ProcessHandle.current().pid(), second.getAgentPid());
  }

  @Test
  void memoryTotalPrefersTheCgroupLimit() throws IOException {
    write("proc/meminfo", "MemTotal:        8000000 kB\nMemFree: 1 kB\n");
    write("proc/self/cgroup", "0::/sandbox/a\n");
    assertEquals(8000000L * 1024, probe().memoryTotal());
    write("sys/fs/cgroup/sandbox/a/memory.max", "max\n");
    assertEquals(8000000L * 1024, probe().memoryTotal());
    write("sys/fs/cgroup/sandbox/a/memory.max", "268435456\n");
    assertEquals(268435456L, probe().memoryTotal());
  }

  @Test
  void statsSumAllProcesses() throws IOException {
    // pid (comm) state ppid ... utime(14) stime(15) ... rss(24)
    String fmt = "%d (x y) S 1 1 1 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 100 1000 %d 0 0";
    write("proc/1/stat", String.format(fmt, 1, 10, 5, 100));
    write("proc/22/stat", String.format(fmt, 22, 1, 1, 50));
    write("proc/self/stat", "ignored");
    write("proc/meminfo", "MemTotal: 1000 kB\n");
    var s = probe().stats();
    assertEquals(2, s.getProcessCount());
    assertEquals(150L * 4096, s.getMemoryUsedBytes());
    assertEquals(17L * 10_000_000L, s.getCpuTimeNanos());
    assertEquals(1000L * 1024, s.getMemoryTotalBytes());
  }

  @Test
  void pidNamespaceRootFromParentAndKernelThreads() throws IOException {
    write("proc/self/stat", "500 (java) S 1 500 500 0");
    write("proc/2/comm", "kthreadd\n");
    assertFalse(probe().pidNamespaceRoot(), "parent is the host's init");
    write("proc/2/comm", "java\n");
    assertTrue(probe().pidNamespaceRoot(), "parent is PID 1 of a namespace without kernel threads");
    write("proc/self/stat", "500 (java) S 77 500 500 0");
    assertFalse(probe().pidNamespaceRoot());
  }
}
