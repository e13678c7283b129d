package dev.flotilla.vm.qemu;

import dev.flotilla.vm.VmException;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Builds the guest image (kernel + initramfs) on first need with the checkout's
 * {@code guest-image/build.sh}, its progress in the node's log: the qemu driver is offered wherever
 * QEMU runs, and no separate command is needed. One build at a time per JVM; the script itself is
 * cached by its inputs and renames its outputs into place, so a concurrent build elsewhere is harmless.
 */
final class GuestImageBuild {
  private static final Logger LOG = LoggerFactory.getLogger(GuestImageBuild.class);
  /** A first build downloads ~72 MB of Debian packages and jlinks a runtime: ~20-40 s here. */
  private static final long TIMEOUT_MINUTES = 20;

  private GuestImageBuild() {}

  static synchronized void ensure(QemuConfig config) throws VmException {
    if (config.imageBuilt()) return;
    Path script = config.buildScript().orElseThrow(() -> new VmException("the qemu driver has no guest image in "
        + config.imageDir() + " and no guest-image/build.sh beside it to build one: point FLOTILLA_QEMU_IMAGE_DIR at a built image"));
    LOG.info("qemu: no guest image in {}: building it with {} (first need; ~1 min)", config.imageDir(), script);
    long t0 = System.nanoTime();
    ProcessBuilder pb = new ProcessBuilder(List.of(script.toString(), "--out", config.imageDir().toString()))
        .directory(script.getParent().getParent().toFile())
        .redirectErrorStream(true)
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    Process p;
    try {
      p = pb.start();
    } catch (IOException e) {
      throw new VmException("cannot run " + script + ": " + e.getMessage(), e);
    }
    StringBuilder tail = new StringBuilder();
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        LOG.info("qemu: {}", line);
        tail.append(line).append('\n');
        if (tail.length() > 4000) tail.delete(0, tail.length() - 2000);
      }
      if (!p.waitFor(TIMEOUT_MINUTES, TimeUnit.MINUTES)) {
        p.destroyForcibly();
        throw new VmException("guest-image/build.sh did not finish within " + TIMEOUT_MINUTES + " minutes");
      }
    } catch (IOException e) {
      p.destroyForcibly();
      throw new VmException("building the guest image failed: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new VmException("interrupted while building the guest image", e);
    }
    if (p.exitValue() != 0 || !config.imageBuilt()) {
      throw new VmException("building the guest image with " + script + " failed (exit " + p.exitValue() + "): " + tail.toString().strip());
    }
    LOG.info("qemu: guest image built in {} s ({})", (System.nanoTime() - t0) / 1_000_000_000, config.imageDir());
  }
}
