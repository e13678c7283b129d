package dev.flotilla.agent.guest.rebirth;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.ExecDefaults;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The tenant's root of a template's agent ({@code --deferred-root}): a template VM boots without
 * its disks mounted, since every clone has disks of its own behind the same devices. The script
 * (the guest image's {@code /sbin/flotilla-root}, the same one init runs on a cold boot) mounts
 * them and writes the exec defaults; a clone's agent runs it when it is reborn, before it takes
 * the sandbox's identity. It runs once: after a success there is nothing left to defer.
 *
 * @param script run without arguments; must exit 0
 * @param execDefaults the file the script writes the image's exec defaults to, null for none
 * @param setpriv the helper that runs processes as another user, null for none
 * @param timeout how long the script may take
 */
public record DeferredRoot(Path script, Path execDefaults, Path setpriv, Duration timeout) {

  /** Mounting an erofs image and an ext4 disk takes well under a second, even under TCG. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);
  /** The end of the script's output that goes into an error message. */
  static final int MESSAGE_OUTPUT = 2048;

  public DeferredRoot(Path script, Path execDefaults, Path setpriv) {
    this(script, execDefaults, setpriv, DEFAULT_TIMEOUT);
  }

  /**
   * Runs the script, waits for it, and reads the exec defaults it wrote.
   *
   * @throws AgentError FAILED_PRECONDITION with the script's exit and output when it fails or
   *     takes too long, or the exec defaults cannot be read
   */
  public ExecDefaults mount() {
    Path out = null;
    try {
      out = Files.createTempFile("flotilla-root", ".out");
      Process p = new ProcessBuilder(script.toString()).redirectErrorStream(true).redirectOutput(out.toFile())
          .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        throw AgentError.precondition("the tenant's root was not mounted: " + script + " did not finish within "
            + timeout + tail(out));
      }
      String output = Files.readString(out, StandardCharsets.UTF_8);
      if (!output.isBlank()) System.err.print(output.endsWith("\n") ? output : output + "\n");
      if (p.exitValue() != 0) {
        throw AgentError.precondition("the tenant's root was not mounted: " + script + " exited with " + p.exitValue()
            + tail(out));
      }
    } catch (IOException e) {
      throw AgentError.precondition("the tenant's root was not mounted: cannot run " + script + ": " + e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw AgentError.precondition("the tenant's root was not mounted: interrupted while " + script + " ran");
    } finally {
      if (out != null) {
        try {
          Files.deleteIfExists(out);
        } catch (IOException ignored) {
          // a temporary file on the guest's tmpfs
        }
      }
    }
    try {
      return ExecDefaults.load(execDefaults, setpriv);
    } catch (IOException e) {
      throw AgentError.precondition("the tenant's root is mounted, but its exec defaults " + execDefaults
          + " cannot be read: " + e.getMessage());
    }
  }

  private static String tail(Path out) {
    try {
      String s = Files.readString(out, StandardCharsets.UTF_8).strip();
      if (s.isEmpty()) return " (no output)";
      return ": " + (s.length() > MESSAGE_OUTPUT ? "…" + s.substring(s.length() - MESSAGE_OUTPUT) : s);
    } catch (IOException e) {
      return "";
    }
  }
}
