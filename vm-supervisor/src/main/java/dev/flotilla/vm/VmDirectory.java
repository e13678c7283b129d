package dev.flotilla.vm;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * The VMs a host's drivers left under a state root, as their saved handles say: what a restarted
 * node adopts or reaps. Tolerant of what a crash leaves: a directory without a handle, or with a
 * half-written or corrupt one, is listed as {@link Entry#problem()} rather than failing the scan.
 */
public final class VmDirectory {
  private final Path root;
  private final int maxDepth;

  /** @param maxDepth how deep under {@code root} state directories sit (e.g. 2 for root/sandbox/incarnation) */
  public VmDirectory(Path root, int maxDepth) {
    this.root = root;
    this.maxDepth = maxDepth;
  }

  public VmDirectory(Path root) {
    this(root, 3);
  }

  /**
   * One state directory found.
   *
   * @param stateDir the directory
   * @param handle its handle, null when unreadable
   * @param problem why the handle could not be read, null when it could
   */
  public record Entry(Path stateDir, VmHandle handle, String problem) {
    public boolean readable() {
      return handle != null;
    }
  }

  /** Every directory under the root holding a handle (or the temp file of a half-written one), sorted by path. */
  public List<Entry> list() {
    List<Entry> out = new ArrayList<>();
    if (!Files.isDirectory(root)) return out;
    List<Path> dirs;
    try (Stream<Path> walk = Files.walk(root, maxDepth)) {
      // A link is never a state directory: whatever it points to is not the node's to act on.
      dirs = walk.filter(p -> Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)).sorted(Comparator.naturalOrder()).toList();
    } catch (IOException | RuntimeException e) {
      // A directory vanishing mid-walk (a VM being destroyed) is not an error of the scan.
      dirs = fallbackDirs();
    }
    for (Path dir : dirs) {
      Path file = dir.resolve(VmHandle.FILE_NAME);
      Path tmp = dir.resolve(VmHandle.FILE_NAME + ".tmp");
      if (Files.isSymbolicLink(file)) {
        out.add(new Entry(dir, null, "handle is a symbolic link: ignored"));
      } else if (Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
        try {
          out.add(new Entry(dir, VmHandle.load(dir), null));
        } catch (IOException | RuntimeException e) {
          out.add(new Entry(dir, null, "unreadable handle: " + e.getMessage()));
        }
      } else if (Files.exists(tmp, LinkOption.NOFOLLOW_LINKS)) {
        out.add(new Entry(dir, null, "half-written handle (" + tmp.getFileName() + " only)"));
      }
    }
    return out;
  }

  /** Only the readable handles. */
  public List<VmHandle> handles() {
    return list().stream().filter(Entry::readable).map(Entry::handle).toList();
  }

  private List<Path> fallbackDirs() {
    List<Path> out = new ArrayList<>();
    collect(root, 0, out);
    out.sort(Comparator.naturalOrder());
    return out;
  }

  private void collect(Path dir, int depth, List<Path> out) {
    out.add(dir);
    if (depth >= maxDepth) return;
    try (Stream<Path> s = Files.list(dir)) {
      for (Path p : s.toList()) {
        if (Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) collect(p, depth + 1, out);
      }
    } catch (IOException | RuntimeException e) {
      // gone meanwhile
    }
  }
}
