package dev.flotilla.vm.ids;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The host id ranges delegated to the node's user in {@code /etc/subuid} and {@code /etc/subgid}:
 * where every sandbox's own 65536-id range comes from. Only ids delegated under the same start in
 * both files count, so a sandbox's uid and gid ranges are one and the same numbers (file ownership
 * in its writable layer stays simple to reason about).
 */
public final class SubordinateIds {
  /** One sandbox's share: a full 16-bit id space, as a container expects (root 0 .. nobody 65534). */
  public static final long RANGE = 65536;

  /** One delegated range from the two files. */
  public record Delegation(long start, long count) {
    /** How many whole sandbox ranges fit. */
    public long slots() {
      return count / RANGE;
    }
  }

  private SubordinateIds() {}

  /**
   * The delegations of {@code user} (by name or by numeric uid) present in both files with the same
   * start, with the smaller count of the two.
   */
  public static List<Delegation> of(String user, String uid, Path subuid, Path subgid) {
    List<Delegation> u = read(subuid, user, uid);
    List<Delegation> g = read(subgid, user, uid);
    List<Delegation> out = new ArrayList<>();
    for (Delegation d : u) {
      g.stream().filter(x -> x.start() == d.start()).findFirst()
          .ifPresent(x -> out.add(new Delegation(d.start(), Math.min(d.count(), x.count()))));
    }
    return List.copyOf(out);
  }

  /** The delegations of the user this JVM runs as, from the standard files. */
  public static List<Delegation> ofCurrentUser() {
    return of(System.getProperty("user.name"), currentUid().map(Object::toString).orElse(""),
        Path.of("/etc/subuid"), Path.of("/etc/subgid"));
  }

  public static Optional<Long> currentUid() {
    try {
      return Optional.of(((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue());
    } catch (IOException | RuntimeException e) {
      return Optional.empty();
    }
  }

  private static List<Delegation> read(Path file, String user, String uid) {
    List<Delegation> out = new ArrayList<>();
    List<String> lines;
    try {
      lines = Files.readAllLines(file);
    } catch (IOException e) {
      return out;
    }
    for (String line : lines) {
      String[] f = line.trim().split(":");
      if (f.length != 3 || !(f[0].equals(user) || f[0].equals(uid))) continue;
      try {
        long start = Long.parseLong(f[1]);
        long count = Long.parseLong(f[2]);
        // Never hand out the node's own ids or anything below the usual system range.
        if (start >= 1 && count >= 1 && start + count <= 0xFFFF_FFFFL) out.add(new Delegation(start, count));
      } catch (NumberFormatException e) {
        // a malformed line delegates nothing
      }
    }
    return out;
  }
}
