package dev.flotilla.agent.protocol.client;

import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A process to start in the guest.
 *
 * @param execId chosen by the host, unique within the sandbox while the process is known
 * @param argv command and arguments; argv[0] is looked up on the guest's PATH
 * @param env extra environment variables
 * @param workingDir empty for the image's WorkingDir, else "/"
 * @param stdin keep a stdin pipe open for writeStdin/closeStdin; otherwise stdin is empty
 * @param user name|uid[:group|gid] inside the sandbox; empty for the image's User, else root
 * @param tty a pseudo-terminal for the process (needs {@code stdin}); null: plain pipes
 */
public record ExecRequest(String execId, List<String> argv, Map<String, String> env, String workingDir, boolean stdin, String user,
    Tty tty) {
  public ExecRequest {
    Objects.requireNonNull(execId, "execId");
    argv = List.copyOf(argv);
    if (argv.isEmpty()) throw new IllegalArgumentException("argv must name a command");
    env = Map.copyOf(env == null ? Map.of() : env);
    workingDir = workingDir == null ? "" : workingDir;
    user = user == null ? "" : user;
    if (tty != null && !stdin) throw new IllegalArgumentException("a tty needs stdin");
  }

  public ExecRequest(String execId, List<String> argv, Map<String, String> env, String workingDir, boolean stdin, String user) {
    this(execId, argv, env, workingDir, stdin, user, null);
  }

  public ExecRequest(String execId, List<String> argv, Map<String, String> env, String workingDir, boolean stdin) {
    this(execId, argv, env, workingDir, stdin, "");
  }

  public static ExecRequest of(String execId, String... argv) {
    return new ExecRequest(execId, List.of(argv), Map.of(), "", false);
  }

  /**
   * A pseudo-terminal of {@code rows} x {@code cols} (0: the agent's 24 x 80) with {@code term} as
   * TERM (empty: xterm) unless the env sets one.
   */
  public record Tty(int rows, int cols, String term) {
    public Tty {
      if (rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff) throw new IllegalArgumentException("rows and cols must be 0-65535");
      term = term == null ? "" : term;
    }
  }
}
