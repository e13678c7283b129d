package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Where this host keeps each cgroup controller the process driver uses, cgroup v2 or v1, and
 * how to limit, freeze and list one sandbox's cgroups. Hosts differ: pure v2 (one tree), v1 with
 * one mount per controller, or hybrid (v1 controllers plus an empty v2 tree that still freezes).
 */
public final class Cgroups {

  public enum Controller {
    MEMORY("memory"),
    CPU("cpu"),
    PIDS("pids"),
    FREEZER("freezer");

    final String v1Name;

    Controller(String v1Name) {
      this.v1Name = v1Name;
    }
  }

  /** Where one controller lives: the hierarchy's mount point and whether it is v2. */
  public record Mount(Path root, boolean v2) {}

  /** The detected layout; a controller is absent when no writable hierarchy has it. */
  public record Layout(Map<Controller, Mount> mounts, String parentName, List<String> problems) {

    public Optional<Mount> mount(Controller c) {
      return Optional.ofNullable(mounts.get(c));
    }
  }

  private Cgroups() {}

  /**
   * Finds the hierarchies from /proc/self/mountinfo and checks that {@code parentName} can be
   * created in each: a controller we cannot write is reported as a problem, not used.
   */
  public static Layout detect(String parentName) {
    Path v2 = null;
    Map<String, Path> v1 = new java.util.HashMap<>();
    List<String> problems = new ArrayList<>();
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
        int sep = line.indexOf(" - ");
        if (sep < 0) continue;
        String[] pre = line.substring(0, sep).split(" ");
        String[] post = line.substring(sep + 3).split(" ");
        if (pre.length < 5 || post.length < 3) continue;
        Path mountPoint = Path.of(pre[4]);
        if (post[0].equals("cgroup2")) {
          if (v2 == null) v2 = mountPoint;
        } else if (post[0].equals("cgroup")) {
          for (String opt : post[2].split(",")) v1.putIfAbsent(opt, mountPoint);
        }
      }
    } catch (IOException e) {
      problems.add("cannot read /proc/self/mountinfo: " + e.getMessage());
    }
    Set<String> v2Controllers = new LinkedHashSet<>();
    if (v2 != null) {
      try {
        v2Controllers.addAll(List.of(Files.readString(v2.resolve("cgroup.controllers")).trim().split("\\s+")));
      } catch (IOException e) {
        // an unreadable v2 tree offers no controllers
      }
    }
    Map<Controller, Mount> mounts = new EnumMap<>(Controller.class);
    for (Controller c : Controller.values()) {
      Mount m = null;
      if (c != Controller.FREEZER && v2Controllers.contains(c.v1Name)) m = new Mount(v2, true);
      else if (v1.containsKey(c.v1Name)) m = new Mount(v1.get(c.v1Name), false);
      // cgroup.freeze is part of every non-root v2 cgroup, no controller needed.
      else if (c == Controller.FREEZER && v2 != null) m = new Mount(v2, true);
      if (m == null) continue;
      Path parent = m.root().resolve(parentName);
      try {
        Files.createDirectories(parent);
        if (m.v2() && c != Controller.FREEZER) enableV2(m.root(), parentName, c.v1Name);
        mounts.put(c, m);
      } catch (IOException | RuntimeException e) {
        problems.add("cannot use the " + c.v1Name + " cgroup at " + parent + ": " + e.getMessage());
      }
    }
    return new Layout(mounts, parentName, problems);
  }

  /** Enables a v2 controller for the children of the root and of our parent group. */
  private static void enableV2(Path root, String parentName, String controller) throws IOException {
    for (Path dir : List.of(root, root.resolve(parentName))) {
      String enabled = Files.readString(dir.resolve("cgroup.subtree_control"));
      if (!List.of(enabled.trim().split("\\s+")).contains(controller)) {
        Files.writeString(dir.resolve("cgroup.subtree_control"), "+" + controller);
      }
    }
  }

  /** The cgroups of one sandbox: one directory per distinct hierarchy. */
  public static final class Sandbox {
    private final Map<Controller, Path> dirs;

    Sandbox(Map<Controller, Path> dirs) {
      this.dirs = new EnumMap<>(Controller.class);
      this.dirs.putAll(dirs);
    }

    public static Sandbox create(Layout layout, String name) throws IOException {
      Map<Controller, Path> dirs = new EnumMap<>(Controller.class);
      for (var e : layout.mounts().entrySet()) {
        Path dir = e.getValue().root().resolve(layout.parentName()).resolve(name);
        Files.createDirectories(dir);
        dirs.put(e.getKey(), dir);
      }
      return new Sandbox(dirs);
    }

    /** Restores from the handle's extras ({@code cgroup.memory=/sys/fs/cgroup/...}). */
    public static Sandbox fromExtras(Map<String, String> extra) {
      Map<Controller, Path> dirs = new EnumMap<>(Controller.class);
      for (Controller c : Controller.values()) {
        String p = extra.get("cgroup." + c.v1Name);
        if (p != null && Files.isDirectory(Path.of(p))) dirs.put(c, Path.of(p));
      }
      return new Sandbox(dirs);
    }

    public Map<String, String> toExtras() {
      Map<String, String> m = new java.util.TreeMap<>();
      dirs.forEach((c, p) -> m.put("cgroup." + c.v1Name, p.toString()));
      return m;
    }

    public Optional<Path> dir(Controller c) {
      return Optional.ofNullable(dirs.get(c));
    }

    private boolean isV2(Path dir) {
      return Files.exists(dir.resolve("cgroup.events")) || Files.exists(dir.resolve("cgroup.freeze"));
    }

    /**
     * Writes the limits; returns the ones that took. {@code cpus} is a quota of whole CPUs,
     * {@code pids} 0 for no limit.
     */
    public Set<String> applyLimits(long memoryBytes, int cpus, int pids) {
      Set<String> applied = new LinkedHashSet<>();
      dir(Controller.MEMORY).ifPresent(d -> {
        if (write(d, isV2(d) ? "memory.max" : "memory.limit_in_bytes", Long.toString(memoryBytes))) applied.add("memory");
      });
      dir(Controller.CPU).ifPresent(d -> {
        long period = 100_000;
        boolean ok = isV2(d)
            ? write(d, "cpu.max", (cpus * period) + " " + period)
            : write(d, "cpu.cfs_period_us", Long.toString(period)) && write(d, "cpu.cfs_quota_us", Long.toString(cpus * period));
        if (ok) applied.add("cpu");
      });
      if (pids > 0) {
        dir(Controller.PIDS).ifPresent(d -> {
          if (write(d, "pids.max", Integer.toString(pids))) applied.add("pids");
        });
      }
      return applied;
    }

    /**
     * Changes the memory limit of a running group in place. A limit below what the group uses makes
     * the kernel reclaim first, and refuse (EBUSY, cgroup v1) when it cannot get there.
     *
     * @throws IOException when the group has no memory cgroup or the kernel refused
     */
    public void setMemoryLimit(long bytes) throws IOException {
      Path d = dir(Controller.MEMORY).orElseThrow(() -> new IOException("no memory cgroup"));
      Files.writeString(d.resolve(isV2(d) ? "memory.max" : "memory.limit_in_bytes"), Long.toString(bytes), StandardCharsets.US_ASCII);
    }

    /** The memory limit in force, empty without a memory cgroup (or "max" on v2). */
    public java.util.OptionalLong memoryLimit() {
      Optional<Path> d = dir(Controller.MEMORY);
      if (d.isEmpty()) return java.util.OptionalLong.empty();
      try {
        String v = Files.readString(d.get().resolve(isV2(d.get()) ? "memory.max" : "memory.limit_in_bytes")).trim();
        return v.equals("max") ? java.util.OptionalLong.empty() : java.util.OptionalLong.of(Long.parseLong(v));
      } catch (IOException | NumberFormatException e) {
        return java.util.OptionalLong.empty();
      }
    }

    /** Moves {@code pid} into every cgroup of the sandbox. */
    public void join(long pid) throws IOException {
      for (Path d : new LinkedHashSet<>(dirs.values())) {
        Files.writeString(d.resolve("cgroup.procs"), Long.toString(pid));
      }
    }

    /** The pids in the sandbox's cgroup (any hierarchy holds all of them). */
    public List<Long> pids() {
      for (Path d : dirs.values()) {
        try {
          List<Long> out = new ArrayList<>();
          for (String l : Files.readAllLines(d.resolve("cgroup.procs"))) {
            if (!l.isBlank()) out.add(Long.parseLong(l.trim()));
          }
          return out;
        } catch (IOException | RuntimeException e) {
          // try the next hierarchy
        }
      }
      return List.of();
    }

    /** Removes the sandbox's cgroups; they must be empty. Returns what could not be removed. */
    public List<Path> remove() {
      List<Path> left = new ArrayList<>();
      for (Path d : new LinkedHashSet<>(dirs.values())) {
        try {
          Files.deleteIfExists(d);
        } catch (IOException e) {
          left.add(d);
        }
      }
      return left;
    }

    private static boolean write(Path dir, String file, String value) {
      try {
        Files.writeString(dir.resolve(file), value, StandardCharsets.US_ASCII);
        return true;
      } catch (IOException e) {
        return false;
      }
    }
  }
}
