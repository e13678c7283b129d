package dev.flotilla.agent.protocol.client;

import java.util.List;
import java.util.Optional;

/**
 * The processes an agent knows (ListProcesses), oldest first.
 *
 * @param truncated the agent knows more than it listed
 */
public record GuestProcesses(List<Entry> processes, boolean truncated) {
  public GuestProcesses {
    processes = List.copyOf(processes);
  }

  /**
   * One process.
   *
   * @param pid as seen inside the guest
   * @param argv as started, cut by the agent when long ({@code argvTruncated})
   * @param exit empty while it runs
   * @param detached its output is in the agent's ring ({@link AgentClient#readOutput})
   * @param outputEnd detached: bytes of output so far
   */
  public record Entry(String execId, long pid, List<String> argv, boolean argvTruncated, Optional<ExitStatus> exit,
      boolean detached, long outputEnd, long startedUnixMillis) {
    public Entry {
      argv = List.copyOf(argv);
    }
  }
}
