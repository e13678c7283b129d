package dev.flotilla.images.unpack;

import dev.flotilla.images.ImageException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The two overlayfs markers an unpacked layer needs, made with the host's tools because Java can
 * make neither: a whiteout is a character device 0:0 ({@code mknod}, needs root), an opaque
 * directory carries {@code trusted.overlay.opaque=y} ({@code setfattr} from Debian's {@code attr}).
 */
final class OverlayMarks {
  private OverlayMarks() {}

  static final String OPAQUE_XATTR = "trusted.overlay.opaque";

  /** Creates {@code p} as a whiteout; {@code p} must not exist (mknod never follows a link there). */
  static void whiteout(Path p) {
    run(List.of("mknod", p.toString(), "c", "0", "0"), "coreutils");
  }

  /** Marks the directory {@code dir} opaque ({@code -h}: on the entry itself, never a link's target). */
  static void opaque(Path dir) {
    run(List.of("setfattr", "-h", "-n", OPAQUE_XATTR, "-v", "y", dir.toString()), "attr");
  }

  private static void run(List<String> cmd, String debianPackage) {
    Process p;
    try {
      p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectInput(ProcessBuilder.Redirect.PIPE).start();
    } catch (IOException e) {
      throw new ImageException(cmd.get(0) + " cannot be run (" + e.getMessage() + "); install Debian's "
          + debianPackage + " package (scripts/setup-host.sh does)", e);
    }
    try {
      p.getOutputStream().close();
      byte[] out = p.getInputStream().readNBytes(4096);
      if (!p.waitFor(30, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new ImageException(String.join(" ", cmd) + " did not finish in 30 s");
      }
      if (p.exitValue() != 0) {
        throw new ImageException(String.join(" ", cmd) + " failed (exit " + p.exitValue() + "): "
            + new String(out, StandardCharsets.UTF_8).strip()
            + " (whiteouts need root and a file system with trusted xattrs and device nodes)");
      }
    } catch (IOException e) {
      throw new ImageException(cmd.get(0) + " failed: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new ImageException("interrupted while running " + cmd.get(0), e);
    }
  }
}
