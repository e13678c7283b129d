package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.guest.AgentError;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;

/**
 * The tenant's root file system when the agent itself lives outside it (a microVM: the agent stays
 * in the initramfs, the image is overlaid at {@code root} by the guest's init). Every process the
 * agent starts enters it through util-linux's {@code nsenter --root --wd} (chroot, then the working
 * directory, then the user: {@code -S}/{@code -G}, which also drops supplementary groups), and every
 * file path of WriteFile/ReadFile is resolved in it.
 *
 * <p>Paths are resolved as the tenant would see them: symbolic links inside the root are followed
 * inside the root, never out of it ({@code ..} stops at the root, an absolute target starts again
 * at the root). The result is a list of names that file calls then walk through directory
 * descriptors without following links ({@code dev.flotilla.agent.guest.system.Confined}), so a
 * tenant who swaps a directory for a link after this resolution gets an error, not a way out. The
 * guest's kernel, not this chroot, stays the boundary for processes (root inside the guest can
 * leave any chroot).
 *
 * @param root where the tenant's root is mounted in the agent's view
 * @param nsenter the helper that enters it
 */
public record TenantRoot(Path root, Path nsenter) {
  private static final int MAX_LINKS = 40;

  public TenantRoot {
    root = root.toAbsolutePath().normalize();
  }

  /** The agent's own root as the tenant's (the process driver): file paths resolve in it the same way. */
  public static TenantRoot filesOnly(Path root) {
    return new TenantRoot(root, null);
  }

  /** {@code path} (absolute, as the tenant sees it) in the agent's view, links resolved inside the root. */
  public Path resolve(String path) {
    return join(components(path, true));
  }

  /**
   * The names that lead from the root to {@code path}, every symbolic link on the way resolved
   * inside the root (the last one only if {@code followLast}), none of them {@code .} or {@code ..}:
   * what {@link dev.flotilla.agent.guest.system.Confined} then walks, one open directory at a time,
   * refusing any name that has become a link since.
   */
  public List<String> components(String path, boolean followLast) {
    if (path.isEmpty() || !path.startsWith("/")) throw AgentError.invalid("path '" + path + "' must be absolute");
    if (path.indexOf('\0') >= 0) throw AgentError.invalid("path '" + path.replace('\0', '?') + "' contains NUL");
    Deque<String> todo = new ArrayDeque<>(split(path));
    List<String> done = new ArrayList<>();
    int links = 0;
    while (!todo.isEmpty()) {
      String name = todo.removeFirst();
      if (name.equals(".")) continue;
      if (name.equals("..")) {
        if (!done.isEmpty()) done.remove(done.size() - 1);
        continue;
      }
      Path here = join(done).resolve(name);
      boolean last = todo.isEmpty();
      if ((followLast || !last) && Files.isSymbolicLink(here)) {
        if (++links > MAX_LINKS) throw AgentError.invalid("path '" + path + "': too many levels of symbolic links");
        String target;
        try {
          target = Files.readSymbolicLink(here).toString();
        } catch (IOException e) {
          throw AgentError.invalid("path '" + path + "': cannot read link " + name + ": " + e.getMessage());
        }
        List<String> rest = split(target);
        for (int i = rest.size() - 1; i >= 0; i--) todo.addFirst(rest.get(i));
        if (target.startsWith("/")) done.clear();
        continue;
      }
      done.add(name);
    }
    return done;
  }

  /** The tenant's view of resolved {@code names}: {@code /a/b}, or {@code /}. */
  public static String tenantPath(List<String> names) {
    return names.isEmpty() ? "/" : "/" + String.join("/", names);
  }

  /** Where resolved {@code names} are in the agent's view (for the calls Java only offers by path). */
  public Path join(List<String> names) {
    Path p = root;
    for (String n : names) p = p.resolve(n);
    return p;
  }

  private static List<String> split(String p) {
    List<String> out = new ArrayList<>();
    for (String s : p.split("/")) if (!s.isEmpty()) out.add(s);
    return out;
  }

  /** Where the tenant's {@code /etc} is, for user and group names. */
  Path etc() {
    return resolve("/etc");
  }

  /**
   * {@code argv} run inside the root, in {@code workingDir} (the tenant's path), as {@code ids}
   * (uid, gid; null for root).
   */
  List<String> command(List<String> argv, String workingDir, long[] ids) {
    Path wd = resolve(workingDir);
    if (!Files.isDirectory(wd, LinkOption.NOFOLLOW_LINKS)) throw AgentError.invalid("working_dir " + workingDir + " is not a directory");
    List<String> out = new ArrayList<>(List.of(nsenter.toString(), "--root=" + root, "--wd=" + wd));
    if (ids != null) out.addAll(List.of("-S", Long.toString(ids[0]), "-G", Long.toString(ids[1])));
    out.add("--");
    out.addAll(argv);
    return out;
  }
}
