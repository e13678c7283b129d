package dev.flotilla.vm.qemu;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;

/**
 * Where the QEMU driver finds its binary and guest image, and how it accelerates.
 *
 * @param qemuBinary {@code qemu-system-x86_64}, from PATH unless absolute
 * @param imageDir the output of {@code guest-image/build.sh}: {@code vmlinux} and {@code initramfs.cpio}
 * @param accel {@code auto} (KVM when /dev/kvm opens and a probe boot works, else TCG), {@code kvm} or {@code tcg}
 */
public record QemuConfig(String qemuBinary, Path imageDir, String accel) {

  /** Guest RAM below this cannot unpack the initramfs (the JRE lives in it) and run the agent. */
  public static final int MIN_MEMORY_MIB = 256;

  public QemuConfig {
    Objects.requireNonNull(qemuBinary, "qemuBinary");
    Objects.requireNonNull(imageDir, "imageDir");
    accel = accel == null ? "auto" : accel.toLowerCase(Locale.ROOT);
    if (!accel.equals("auto") && !accel.equals("kvm") && !accel.equals("tcg")) {
      throw new IllegalArgumentException("accel must be auto, kvm or tcg, not '" + accel + "'");
    }
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
   * {@code -Dflotilla.qemu.accel} / {@code FLOTILLA_QEMU_ACCEL}, binary from {@code FLOTILLA_QEMU}.
   */
  public static QemuConfig fromEnvironment() {
    String dir = setting("flotilla.qemu.image-dir", "FLOTILLA_QEMU_IMAGE_DIR");
    Path image = dir != null ? Path.of(dir) : findCheckoutImage().orElse(Path.of("guest-image", "out"));
    String bin = setting("flotilla.qemu.binary", "FLOTILLA_QEMU");
    return new QemuConfig(bin == null ? "qemu-system-x86_64" : bin, image.toAbsolutePath(),
        setting("flotilla.qemu.accel", "FLOTILLA_QEMU_ACCEL"));
  }

  private static Optional<Path> findCheckoutImage() {
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      Path out = p.resolve("guest-image").resolve("out");
      if (Files.isRegularFile(out.resolve("vmlinux"))) return Optional.of(out);
    }
    return Optional.empty();
  }

  private static String setting(String property, String env) {
    String v = System.getProperty(property);
    if (v == null || v.isBlank()) v = System.getenv(env);
    return v == null || v.isBlank() ? null : v;
  }
}
