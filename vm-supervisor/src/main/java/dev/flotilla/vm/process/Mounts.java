package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * mount(8), umount(8) and friends, and which mount points exist: the node mounts as root on the host.
 * Shared by the drivers (the qemu driver mounts an image's layers to make its block device).
 */
public final class Mounts {
  private Mounts() {}

  /** Whether {@code dir} is a mount point now (per /proc/self/mountinfo). */
  public static boolean isMountPoint(Path dir) {
    String want = dir.toAbsolutePath().normalize().toString();
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
        String[] f = line.split(" ");
        if (f.length > 4 && unescape(f[4]).equals(want)) return true;
      }
    } catch (IOException e) {
      return false;
    }
    return false;
  }

  /** Mount points at or below {@code dir}, deepest first. */
  public static List<Path> mountPointsUnder(Path dir) {
    String base = dir.toAbsolutePath().normalize().toString();
    List<Path> out = new ArrayList<>();
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
        String[] f = line.split(" ");
        if (f.length <= 4) continue;
        String mp = unescape(f[4]);
        if (mp.equals(base) || mp.startsWith(base + "/")) out.add(Path.of(mp));
      }
    } catch (IOException e) {
      return out;
    }
    out.sort((a, b) -> Integer.compare(b.getNameCount(), a.getNameCount()));
    return out;
  }

  private static String unescape(String s) {
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\");
  }

  /** Runs a command that must succeed within 60 s; its output is the exception's message otherwise. */
  public static void run(String... cmd) throws IOException {
    run(java.time.Duration.ofSeconds(60), cmd);
  }

  /**
   * Runs a command that must succeed within {@code timeout} and prints little (its output is read
   * once it has exited); returns that output (stderr merged), which is the exception's message otherwise.
   */
  public static String run(java.time.Duration timeout, String... cmd) throws IOException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
    String out;
    try {
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", cmd) + " did not finish within " + timeout.toSeconds() + " s");
      }
      out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted: " + String.join(" ", cmd), e);
    }
    if (p.exitValue() != 0) throw new IOException(String.join(" ", cmd) + " failed (" + p.exitValue() + "): " + out);
    return out;
  }

  /** Unmounts {@code dir} if it is a mount point (lazily when busy: nothing new can enter it). */
  public static void unmount(Path dir) throws IOException {
    if (!isMountPoint(dir)) return;
    try {
      run("umount", dir.toString());
    } catch (IOException e) {
      run("umount", "-l", dir.toString());
    }
  }
}
