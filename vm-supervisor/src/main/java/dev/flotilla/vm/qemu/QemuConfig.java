package dev.flotilla.vm.qemu;

import dev.flotilla.vm.net.EgressConfig;
import dev.flotilla.vm.net.EgressHost;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;

/**
 * Where the QEMU driver finds its binary and guest image, how it accelerates, and how it jails
 * each QEMU (see {@link QemuJail}).
 *
 * @param qemuBinary {@code qemu-system-x86_64}, from PATH unless absolute
 * @param imageDir the output of {@code guest-image/build.sh}: {@code vmlinux} and {@code initramfs.cpio}
 * @param accel {@code auto} (KVM when /dev/kvm opens and a probe boot works, else TCG), {@code kvm} or {@code tcg}
 * @param stateRoot node-only (0700) directory of the driver itself: the jails' shared read-only
 *     root and, for the default id allocator, its table; not the VMs' own directories
 * @param cgroupParent the cgroup under which each QEMU gets its own, in every hierarchy
 * @param memoryOverheadMiB what QEMU may use beyond guest RAM before its memory cgroup reclaims
 *     or kills it: measured under TCG after boot, ~96 MiB of translation cache (capped at
 *     {@link QemuHypervisor#TCG_TB_SIZE_MIB}), ~12 MiB of its own, plus the page cache of the kernel
 *     and initramfs it maps (122 MiB, clean, reclaimable, charged to the first VM that reads them)
 * @param threadsLimit the pids cgroup limit of one QEMU (its threads: vCPUs, I/O workers, RCU)
 * @param requireLimits refuse to start a VM whose memory, CPU and thread limits the host cannot
 *     enforce (no writable cgroup); false starts it unlimited, with a warning
 * @param consoleLogBytes how much of the guest's serial console the node keeps per VM (two
 *     files of half this size: the current one and the one before)
 * @param defaultRootfs the default image's root file system (one layer), for sandboxes that name
 *     no image: {@code guest-image/build-default-image.sh}, the process driver's too
 * @param defaultDiskMiB each sandbox's writable disk when its spec names no size
 * @param imageDiskCacheBytes how much the images' block devices may take on this node before the
 *     ones no VM uses are removed
 * @param network egress networking (passt, the protected endpoints, DNS, refresh): see {@link QemuNetwork}
 * @param templateCacheBytes how much VM templates may hold on this node (0: every VM boots cold)
 * @param cloneTcgCacheMiB under TCG, the translation cache of a template's clone (a cold VM's is
 *     {@link QemuHypervisor#TCG_TB_SIZE_MIB}): a clone translates only what its guest runs after the
 *     template's save, and a full cache is flushed and filled again, so this bounds an idle clone's
 *     memory at the cost of retranslating when a busy one's code outgrows it
 */
public record QemuConfig(
    String qemuBinary,
    Path imageDir,
    String accel,
    Path stateRoot,
    String cgroupParent,
    int memoryOverheadMiB,
    int threadsLimit,
    boolean requireLimits,
    long consoleLogBytes,
    Path defaultRootfs,
    int defaultDiskMiB,
    long imageDiskCacheBytes,
    EgressConfig network,
    long templateCacheBytes,
    int cloneTcgCacheMiB) {

  /** Guest RAM below this cannot unpack the initramfs (the JRE lives in it) and run the agent. */
  public static final int MIN_MEMORY_MIB = 256;
  public static final int DEFAULT_MEMORY_OVERHEAD_MIB = 256;
  public static final int DEFAULT_THREADS_LIMIT = 256;
  public static final long DEFAULT_CONSOLE_LOG_BYTES = 1024 * 1024;
  public static final int DEFAULT_DISK_MIB = 1024;
  public static final long DEFAULT_IMAGE_DISK_CACHE_BYTES = 8L << 30;
  /**
   * 32 MiB: ten idle clones under TCG held 58 MiB each of a 128 MiB cache, 86 MiB of PSS each in
   * all with 32 against 115 with 128, and their create-to-RUNNING did not change (docs/benchmarks.md).
   */
  public static final int DEFAULT_CLONE_TCG_CACHE_MIB = 32;

  public QemuConfig {
    Objects.requireNonNull(qemuBinary, "qemuBinary");
    Objects.requireNonNull(imageDir, "imageDir");
    Objects.requireNonNull(stateRoot, "stateRoot");
    accel = accel == null ? "auto" : accel.toLowerCase(Locale.ROOT);
    if (!accel.equals("auto") && !accel.equals("kvm") && !accel.equals("tcg")) {
      throw new IllegalArgumentException("accel must be auto, kvm or tcg, not '" + accel + "'");
    }
    if (cgroupParent == null || !cgroupParent.matches("[A-Za-z0-9_.-]+") || cgroupParent.contains("..")) {
      throw new IllegalArgumentException("cgroupParent must be a plain name, not '" + cgroupParent + "'");
    }
    if (memoryOverheadMiB < 0) throw new IllegalArgumentException("memoryOverheadMiB must be >= 0");
    if (threadsLimit < 16) throw new IllegalArgumentException("threadsLimit must be >= 16 (QEMU needs a dozen threads)");
    if (consoleLogBytes < 4096) throw new IllegalArgumentException("consoleLogBytes must be >= 4096");
    Objects.requireNonNull(defaultRootfs, "defaultRootfs");
    if (defaultDiskMiB < 16) throw new IllegalArgumentException("defaultDiskMiB must be at least 16");
    if (imageDiskCacheBytes < 0) throw new IllegalArgumentException("imageDiskCacheBytes must be >= 0");
    Objects.requireNonNull(network, "network");
    if (templateCacheBytes < 0) throw new IllegalArgumentException("templateCacheBytes must be >= 0 (0: no templates)");
    if (cloneTcgCacheMiB < 8 || cloneTcgCacheMiB > 2048) {
      throw new IllegalArgumentException("cloneTcgCacheMiB must be between 8 and 2048 MiB, not " + cloneTcgCacheMiB);
    }
  }

  /** Defaults for everything but binary, image, accel and the driver's state root. */
  public QemuConfig(String qemuBinary, Path imageDir, String accel, Path stateRoot) {
    this(qemuBinary, imageDir, accel, stateRoot, "flotilla-qemu", DEFAULT_MEMORY_OVERHEAD_MIB, DEFAULT_THREADS_LIMIT,
        true, DEFAULT_CONSOLE_LOG_BYTES, defaultRootfsFor(imageDir), DEFAULT_DISK_MIB, DEFAULT_IMAGE_DISK_CACHE_BYTES,
        EgressConfig.defaults().withPasst(EgressHost.which("passt").orElse(Path.of("/usr/bin/passt"))), 0,
        DEFAULT_CLONE_TCG_CACHE_MIB);
  }

  public QemuConfig withRequireLimits(boolean require) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, require, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withCgroupParent(String parent) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, parent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withConsoleLogBytes(long bytes) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, bytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withDefaultRootfs(Path rootfs) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        rootfs, defaultDiskMiB, imageDiskCacheBytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withDefaultDiskMiB(int mib) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, mib, imageDiskCacheBytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withImageDiskCacheBytes(long bytes) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, bytes, network, templateCacheBytes, cloneTcgCacheMiB);
  }

  public QemuConfig withNetwork(EgressConfig egress) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, egress, templateCacheBytes, cloneTcgCacheMiB);
  }

  /**
   * How much of the node's memory and disk VM templates may hold ({@link QemuTemplates}); 0 (the
   * default for a driver built in code) starts every VM cold. The node turns them on.
   */
  public QemuConfig withTemplateCacheBytes(long bytes) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, network, bytes, cloneTcgCacheMiB);
  }

  /** See {@code cloneTcgCacheMiB}. */
  public QemuConfig withCloneTcgCacheMiB(int mib) {
    return new QemuConfig(qemuBinary, imageDir, accel, stateRoot, cgroupParent, memoryOverheadMiB, threadsLimit, requireLimits, consoleLogBytes,
        defaultRootfs, defaultDiskMiB, imageDiskCacheBytes, network, templateCacheBytes, mib);
  }

  /** Where this driver keeps its templates (node-only). */
  public Path templatesDir() {
    return stateRoot.resolve("templates");
  }

  /** The node's endpoints ({@code host:port}) no sandbox reaches, whatever its lists say. */
  public QemuConfig withProtectedEndpoints(java.util.List<String> endpoints) {
    return withNetwork(network.withProtectedEndpoints(endpoints));
  }

  /**
   * {@code -Dflotilla.default.image} (as the process driver's tests set it), else the default
   * image beside a checkout's guest image: {@code guest-image/out/default-image/rootfs}.
   */
  static Path defaultRootfsFor(Path imageDir) {
    String p = System.getProperty("flotilla.default.image");
    if (p != null && !p.isBlank()) return Path.of(p);
    return imageDir.resolve("default-image").resolve("rootfs");
  }

  /**
   * {@code guest-image/build.sh} of the checkout whose {@code guest-image/out} this image directory
   * is: how the driver builds its guest image on first need. Empty for an image directory elsewhere.
   */
  public Optional<Path> buildScript() {
    Path parent = imageDir.toAbsolutePath().normalize().getParent();
    if (parent == null || !imageDir.getFileName().toString().equals("out")) return Optional.empty();
    Path script = parent.resolve("build.sh");
    return Files.isRegularFile(script) && Files.isExecutable(script) ? Optional.of(script) : Optional.empty();
  }

  /** Where each sandbox's writable disk lives: node-only, survives its restarts on this node. */
  public Path disksDir() {
    return stateRoot.resolve("disks");
  }

  /** Where the images' block devices are cached: node-only. */
  public Path imageDisksDir() {
    return stateRoot.resolve("image-disks");
  }

  public Path kernel() {
    return imageDir.resolve("vmlinux");
  }

  public Path initramfs() {
    return imageDir.resolve("initramfs.cpio");
  }

  public boolean imageBuilt() {
    return Files.isRegularFile(kernel()) && Files.isRegularFile(initramfs());
  }

  /**
   * From {@code -Dflotilla.qemu.image-dir} / {@code FLOTILLA_QEMU_IMAGE_DIR}, else the nearest
   * {@code guest-image/out} at or above the working directory (a checkout); accel from
   * {@code -Dflotilla.qemu.accel} / {@code FLOTILLA_QEMU_ACCEL}, binary from {@code FLOTILLA_QEMU},
   * the driver's state root from {@code -Dflotilla.qemu.state-root} / {@code FLOTILLA_QEMU_STATE_ROOT}
   * (else {@code flotilla-qemu} in the temporary directory).
   */
  public static QemuConfig fromEnvironment() {
    String dir = setting("flotilla.qemu.image-dir", "FLOTILLA_QEMU_IMAGE_DIR");
    Path image = dir != null ? Path.of(dir) : findCheckoutImage().orElse(Path.of("guest-image", "out"));
    String bin = setting("flotilla.qemu.binary", "FLOTILLA_QEMU");
    String root = setting("flotilla.qemu.state-root", "FLOTILLA_QEMU_STATE_ROOT");
    return new QemuConfig(bin == null ? "qemu-system-x86_64" : bin, image.toAbsolutePath(),
        setting("flotilla.qemu.accel", "FLOTILLA_QEMU_ACCEL"),
        root != null ? Path.of(root) : Path.of(System.getProperty("java.io.tmpdir"), "flotilla-qemu"));
  }

  private static Optional<Path> findCheckoutImage() {
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      Path out = p.resolve("guest-image").resolve("out");
      // a built image, or a checkout that can build one on first need
      if (Files.isRegularFile(out.resolve("vmlinux")) || Files.isRegularFile(p.resolve("guest-image").resolve("build.sh"))) {
        return Optional.of(out);
      }
    }
    return Optional.empty();
  }

  private static String setting(String property, String env) {
    String v = System.getProperty(property);
    if (v == null || v.isBlank()) v = System.getenv(env);
    return v == null || v.isBlank() ? null : v;
  }
}
