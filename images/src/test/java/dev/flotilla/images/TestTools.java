package dev.flotilla.images;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs host tools in tests; a missing tool fails the test naming the Debian package to install. */
public final class TestTools {
  private TestTools() {}

  /** Fails unless {@code tool} is on the PATH. */
  public static void require(String tool, String debianPackage) {
    for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
      if (Files.isExecutable(Path.of(dir, tool))) {
        return;
      }
    }
    throw new AssertionError(tool + " is not installed: apt-get install " + debianPackage + " (scripts/setup-host.sh does)");
  }

  /** Runs {@code cmd} in {@code dir}, returns its output; a non-zero exit fails with the output. */
  public static String run(Path dir, String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).directory(dir == null ? null : dir.toFile()).redirectErrorStream(true).start();
      p.getOutputStream().close();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(120, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError(String.join(" ", cmd) + " did not finish in 120 s");
      }
      if (p.exitValue() != 0) {
        throw new AssertionError(String.join(" ", cmd) + " failed (" + p.exitValue() + "):\n" + out);
      }
      return out.strip();
    } catch (IOException e) {
      throw new AssertionError("cannot run " + List.of(cmd) + ": " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
  }
}
