package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.guest.AgentError;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;

/**
 * What every process the agent starts gets unless its exec says otherwise: the image's {@code Env},
 * {@code WorkingDir} and {@code User} (OCI image config). The node writes them for the agent before
 * it starts; they are read once, before any tenant process runs.
 *
 * <p>Running as a user needs a helper that can switch ids before exec (the JVM cannot): {@code setpriv}
 * from the sandbox runtime. Names are resolved in the sandbox's own {@code /etc/passwd} and
 * {@code /etc/group}, so numeric ids reach setpriv and no name service is involved.
 *
 * @param env variables added over the agent's minimal default environment
 * @param workingDir empty for "/"
 * @param user {@code name}, {@code uid}, {@code name:group} or {@code uid:gid}; empty for root
 * @param setpriv the helper, absent where the agent cannot switch users
 */
public record ExecDefaults(Map<String, String> env, String workingDir, String user, Optional<Path> setpriv) {
  public static final ExecDefaults NONE = new ExecDefaults(Map.of(), "", "", Optional.empty());

  public ExecDefaults {
    env = Map.copyOf(env);
    workingDir = workingDir == null ? "" : workingDir;
    user = user == null ? "" : user;
  }

  /**
   * Reads {@code env.NAME=value}, {@code workingDir=} and {@code user=} from a properties file.
   *
   * @param file the file the node wrote, or null for none
   */
  public static ExecDefaults load(Path file, Path setpriv) throws IOException {
    Map<String, String> env = new TreeMap<>();
    String cwd = "";
    String user = "";
    if (file != null) {
      Properties p = new Properties();
      try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
        p.load(r);
      }
      for (String k : p.stringPropertyNames()) {
        if (k.startsWith("env.")) env.put(k.substring(4), p.getProperty(k));
      }
      cwd = p.getProperty("workingDir", "");
      user = p.getProperty("user", "");
    }
    return new ExecDefaults(env, cwd, user, Optional.ofNullable(setpriv));
  }

  /** The process's environment: the minimal defaults, then these, then the exec's own. */
  Map<String, String> environment(Map<String, String> base, Map<String, String> requested) {
    Map<String, String> out = new TreeMap<>(base);
    out.putAll(env);
    out.putAll(requested);
    return out;
  }

  String workingDir(String requested) {
    if (!requested.isEmpty()) return requested;
    return workingDir.isEmpty() ? "/" : workingDir;
  }

  /** {@code argv} as the exec's user (or this default) runs it: prefixed with setpriv unless root. */
  List<String> command(List<String> argv, String requestedUser, Path etc) {
    long[] ids = ids(requestedUser, etc);
    if (ids == null) return argv;
    String spec = requestedUser.isEmpty() ? user : requestedUser;
    if (setpriv.isEmpty()) throw AgentError.invalid("this sandbox cannot run processes as user '" + spec + "' (no setpriv in its runtime)");
    List<String> out = new ArrayList<>(List.of(setpriv.get().toString(), "--reuid=" + ids[0], "--regid=" + ids[1], "--clear-groups", "--"));
    out.addAll(argv);
    return out;
  }

  /** uid and gid the exec's user (or this default) runs as; null for root (uid 0, gid 0). */
  long[] ids(String requestedUser, Path etc) {
    String spec = requestedUser.isEmpty() ? user : requestedUser;
    if (spec.isEmpty()) return null;
    long[] ids = resolve(spec, etc);
    return ids[0] == 0 && ids[1] == 0 ? null : ids;
  }

  /** uid and gid of {@code name|uid[:group|gid]}, from {@code etc/passwd} and {@code etc/group}. */
  static long[] resolve(String spec, Path etc) {
    String[] parts = spec.split(":", 2);
    long uid;
    long gid;
    String[] pw = parts[0].matches("\\d+") ? find(etc.resolve("passwd"), 2, parts[0]) : find(etc.resolve("passwd"), 0, parts[0]);
    if (parts[0].matches("\\d+")) {
      uid = Long.parseLong(parts[0]);
    } else if (pw != null) {
      uid = Long.parseLong(pw[2]);
    } else {
      throw AgentError.invalid("user '" + parts[0] + "' is not in the sandbox's /etc/passwd: use a uid or add the user to the image");
    }
    if (parts.length == 2) {
      if (parts[1].matches("\\d+")) {
        gid = Long.parseLong(parts[1]);
      } else {
        String[] gr = find(etc.resolve("group"), 0, parts[1]);
        if (gr == null) throw AgentError.invalid("group '" + parts[1] + "' is not in the sandbox's /etc/group: use a gid or add the group to the image");
        gid = Long.parseLong(gr[2]);
      }
    } else {
      gid = pw != null ? Long.parseLong(pw[3]) : uid;
    }
    if (uid > 65535 || gid > 65535) throw AgentError.invalid("user '" + spec + "': ids above 65535 do not exist in a sandbox");
    return new long[] {uid, gid};
  }

  private static String[] find(Path file, int field, String value) {
    try {
      for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
        String[] f = line.split(":", -1);
        // passwd: name:x:uid:gid:…; group: name:x:gid:members. Only the id fields used must be numbers.
        boolean passwd = file.getFileName().toString().equals("passwd");
        if (f.length >= 4 && f[field].equals(value) && f[2].matches("\\d+") && (!passwd || f[3].matches("\\d+"))) return f;
      }
    } catch (IOException e) {
      return null;
    }
    return null;
  }
}
