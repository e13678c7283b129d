package dev.flotilla.sandbox.protocol;

import java.util.List;
import java.util.Map;

/**
 * A process to run in a sandbox.
 *
 * @param argv the command and its arguments, argv[0] looked up on the guest's PATH
 * @param env extra environment variables
 * @param workingDir empty for the image's WorkingDir, else "/"
 * @param user name|uid[:group|gid] inside the sandbox; empty for the image's User, else root
 */
public record ExecSpec(List<String> argv, Map<String, String> env, String workingDir, String user) {
  public ExecSpec {
    argv = List.copyOf(argv);
    env = Map.copyOf(env == null ? Map.of() : env);
    workingDir = workingDir == null ? "" : workingDir;
    user = user == null ? "" : user;
  }

  public ExecSpec(List<String> argv, Map<String, String> env, String workingDir) {
    this(argv, env, workingDir, "");
  }
}
