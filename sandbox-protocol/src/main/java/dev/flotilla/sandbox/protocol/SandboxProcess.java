package dev.flotilla.sandbox.protocol;

import java.time.Instant;
import java.util.List;

/**
 * A process of a sandbox, as its guest agent knows it.
 *
 * @param id what callers name it by (attach, kill): the guest agent's exec id, unique in the
 *     sandbox's incarnation ("main" for the main process)
 * @param pid as seen inside the sandbox, for people; never used to find the process
 * @param argv its command, cut by the agent when long ({@code argvTruncated})
 * @param running false once it has exited ({@code exitCode} or {@code signal} then say how)
 * @param detached its output is kept in a bounded ring and can be attached to
 * @param outputEnd detached: bytes of output it has written so far
 */
public record SandboxProcess(String id, long pid, List<String> argv, boolean argvTruncated, boolean running, int exitCode,
    int signal, boolean detached, long outputEnd, Instant startedAt) {
  public SandboxProcess {
    argv = List.copyOf(argv);
  }

  /** The processes of a sandbox, oldest first; {@code truncated} when there were more than listed. */
  public record Listing(List<SandboxProcess> processes, boolean truncated) {
    public Listing {
      processes = List.copyOf(processes);
    }
  }
}
