package dev.flotilla.vm.qemu;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** What the host offers QEMU: a working KVM, the TSC rate TCG guests need, process identity. */
final class HostProbe {

  private static final Logger LOG = LoggerFactory.getLogger(HostProbe.class);

  private HostProbe() {}

  /** Result of deciding on an accelerator, with the reason for a fall-back to TCG. */
  record Accel(boolean kvm, String reason) {}

  private static Accel cachedAuto;

  /**
   * KVM when asked for, or with {@code auto} when /dev/kvm opens read-write and a probe boot
   * (our kernel without an initramfs: it panics and, with {@code panic=-1 -no-reboot}, QEMU
   * exits 0) finishes. Opening is not enough: nested KVM can open and then fail to run a guest
   * (seen on this machine kind: "KVM internal error", QEMU hangs). The probe runs once per JVM,
   * jailed as nobody with a /dev/kvm of its own, as a VM's QEMU would run.
   */
  static synchronized Accel accel(QemuConfig config) {
    if (config.accel().equals("kvm")) return new Accel(true, "configured");
    if (config.accel().equals("tcg")) return new Accel(false, "configured");
    if (cachedAuto != null) return cachedAuto;
    File kvm = new File("/dev/kvm");
    if (!kvm.exists()) {
      cachedAuto = new Accel(false, "/dev/kvm does not exist");
    } else {
      try (RandomAccessFile f = new RandomAccessFile(kvm, "rw")) {
        cachedAuto = probeBoot(config);
      } catch (IOException e) {
        cachedAuto = new Accel(false, "/dev/kvm cannot be opened: " + e.getMessage());
      }
    }
    LOG.info("qemu driver: {} ({})", cachedAuto.kvm() ? "KVM" : "TCG", cachedAuto.reason());
    return cachedAuto;
  }

  /** The probe's QEMU runs jailed like every other, as nobody: no QEMU of the driver runs as root. */
  private static final long PROBE_UID = 65534;

  private static Accel probeBoot(QemuConfig config) {
    if (!config.imageBuilt()) return new Accel(false, "no guest kernel to probe KVM with");
    Optional<String> kvmDevice = QemuJail.deviceNumbers(Path.of("/dev/kvm"));
    if (kvmDevice.isEmpty()) return new Accel(false, "/dev/kvm is not a character device");
    Path run = config.stateRoot().resolve("kvm-probe-run");
    List<String> cmd;
    try {
      QemuJail.Tree tree = QemuJail.ensure(config.stateRoot(), config.qemuBinary());
      QemuJail.deleteTree(run);
      Files.createDirectories(run);
      Files.setAttribute(run, "unix:uid", (int) PROBE_UID);
      Files.setAttribute(run, "unix:gid", (int) PROBE_UID);
      cmd = QemuJail.launch(tree.root(), tree.qemu(), run, config.kernel(), config.initramfs(), PROBE_UID, kvmDevice,
          List.of("-M", "microvm,pit=on", "-accel", "kvm", "-cpu", "host", "-m", "128M", "-nodefaults", "-no-user-config",
              "-display", "none", "-no-reboot", "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
              "-kernel", QemuJail.KERNEL, "-append", "console=ttyS0 quiet panic=-1"));
    } catch (IOException | RuntimeException e) {
      return new Accel(false, "cannot jail the KVM probe: " + e.getMessage());
    }
    Process p = null;
    try {
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD);
      pb.environment().clear();
      pb.environment().put("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
      p = pb.start();
      try (var release = p.getOutputStream()) {
        release.write('\n'); // no cgroup for the probe: go at once
      }
      if (!p.waitFor(10, TimeUnit.SECONDS)) return new Accel(false, "/dev/kvm opens but a KVM guest did not run within 10 s");
      return p.exitValue() == 0
          ? new Accel(true, "/dev/kvm works")
          : new Accel(false, "/dev/kvm opens but a KVM guest failed (QEMU exit " + p.exitValue() + ")");
    } catch (IOException e) {
      return new Accel(false, "KVM probe failed: " + e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return new Accel(false, "KVM probe interrupted");
    } finally {
      if (p != null && p.isAlive()) {
        p.destroyForcibly();
        p.onExit().orTimeout(10, TimeUnit.SECONDS).exceptionally(x -> null).join();
      }
      QemuJail.deleteTree(run);
    }
  }

  private static long cachedTscKhz = -1;

  /**
   * The host's TSC rate in kHz. TCG's guest TSC runs at the host's, and a microvm guest without a
   * PIT calibration to trust hangs at boot about half the time unless told the rate
   * ({@code tsc_early_khz}). Sources, best first: sysfs (some kernels), the kernel's own
   * calibration in its log, then /proc/cpuinfo's "cpu MHz", which equals the TSC rate on virtual
   * hosts with constant_tsc but is the current clock on hosts that scale it. 0 when unknown.
   */
  static synchronized long tscKhz() {
    if (cachedTscKhz >= 0) return cachedTscKhz;
    long khz = 0;
    try {
      Path sysfs = Path.of("/sys/devices/system/cpu/cpu0/tsc_freq_khz");
      if (Files.isReadable(sysfs)) khz = Long.parseLong(Files.readString(sysfs).trim());
    } catch (IOException | RuntimeException e) {
      LOG.debug("no tsc_freq_khz: {}", e.toString());
    }
    if (khz <= 0) khz = tscFromKernelLog();
    if (khz <= 0) {
      try {
        for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"), StandardCharsets.ISO_8859_1)) {
          if (line.startsWith("cpu MHz")) {
            khz = Math.round(Double.parseDouble(line.substring(line.indexOf(':') + 1).trim()) * 1000);
            break;
          }
        }
      } catch (IOException | RuntimeException e) {
        LOG.debug("no cpu MHz: {}", e.toString());
      }
    }
    cachedTscKhz = Math.max(0, khz);
    return cachedTscKhz;
  }

  /** "tsc: Refined TSC clocksource calibration: 2596.136 MHz" or "tsc: Detected 2596.136 MHz". */
  private static long tscFromKernelLog() {
    Process p = null;
    try {
      p = new ProcessBuilder("dmesg").redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.ISO_8859_1);
      if (!p.waitFor(2, TimeUnit.SECONDS) || p.exitValue() != 0) return 0;
      long detected = 0;
      for (String line : out.split("\n")) {
        int i = line.indexOf("tsc: ");
        if (i < 0 || !line.endsWith(" MHz")) continue;
        String mhz = line.substring(line.lastIndexOf(' ', line.length() - 5) + 1, line.length() - 4);
        long khz = Math.round(Double.parseDouble(mhz) * 1000);
        if (line.contains("Refined TSC")) return khz;
        if (line.contains("Detected")) detected = khz;
      }
      return detected;
    } catch (IOException | RuntimeException e) {
      return 0;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return 0;
    } finally {
      if (p != null) p.destroy();
    }
  }

  /** Field 22 of /proc/PID/stat (start time in clock ticks since boot), if the process exists. */
  static OptionalLong startTime(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc/" + pid + "/stat"), StandardCharsets.ISO_8859_1);
      String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      // f[0] is field 3 (state); field 22 is f[19]
      if ("Z".equals(f[0]) || "X".equals(f[0])) return OptionalLong.empty();
      return OptionalLong.of(Long.parseLong(f[19]));
    } catch (IOException | RuntimeException e) {
      return OptionalLong.empty();
    }
  }

  static boolean isSameProcess(long pid, long startTime) {
    OptionalLong st = startTime(pid);
    return pid > 0 && st.isPresent() && st.getAsLong() == startTime;
  }
}
