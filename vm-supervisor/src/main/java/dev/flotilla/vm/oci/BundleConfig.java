package dev.flotilla.vm.oci;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * The {@code config.json} of one OCI runtime bundle (opencontainers/runtime-spec config.md and
 * config-linux.md), for a sandbox that assumes the code inside is hostile: every namespace, the
 * sandbox's own id mapping, Docker's default capabilities, no new privileges, a seccomp filter,
 * masked and read-only /proc paths, read-only /sys, a minimal /dev, private /dev/shm and limits.
 *
 * @param args the container's init
 * @param env its environment, {@code NAME=value}
 * @param cwd its working directory inside the root
 * @param root the prepared root file system on the host
 * @param hostname the UTS name
 * @param hostIdStart host uid/gid of id 0 inside; {@code idCount} ids are mapped
 * @param idCount how many ids are mapped
 * @param mounts extra mounts (after the standard ones)
 * @param cgroupsPath the container's cgroup, relative to each hierarchy's root
 * @param memoryBytes memory limit; swap is limited to the same total, so the sandbox never swaps
 * @param cpus CPU quota in whole CPUs
 * @param pids the pids limit (threads count)
 * @param seccomp the {@code linux.seccomp} object ({@link SeccompProfile})
 */
public record BundleConfig(
    List<String> args,
    List<String> env,
    String cwd,
    Path root,
    String hostname,
    long hostIdStart,
    long idCount,
    List<Mount> mounts,
    String cgroupsPath,
    long memoryBytes,
    int cpus,
    int pids,
    Map<String, Object> seccomp) {

  /** Docker's and the OCI runtime's default set, without CAP_SYS_ADMIN, CAP_NET_ADMIN or CAP_SYS_PTRACE. */
  public static final Set<String> CAPABILITIES = Set.of(
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
      "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
      "CAP_AUDIT_WRITE");

  static final List<String> MASKED_PATHS = List.of(
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
      "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap");
  static final List<String> READONLY_PATHS = List.of(
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger");
  /** The CFS period of every sandbox's CPU quota (a quota of N CPUs is N periods). */
  public static final long CPU_PERIOD_US = 100_000;

  /** One mount, as config.md has it. */
  public record Mount(String destination, String type, String source, List<String> options) {
    public Mount {
      Objects.requireNonNull(destination, "destination");
      options = List.copyOf(options);
    }

    /** A read-only bind mount of a host path. */
    public static Mount readOnlyBind(Path source, String destination) {
      return new Mount(destination, "bind", source.toString(), List.of("rbind", "ro", "nosuid", "nodev"));
    }

    /** A writable bind mount of a host path, never executable or suid. */
    public static Mount writableBind(Path source, String destination) {
      return new Mount(destination, "bind", source.toString(), List.of("rbind", "rw", "nosuid", "nodev", "noexec"));
    }

    Map<String, Object> json() {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("destination", destination);
      m.put("type", type);
      m.put("source", source);
      m.put("options", options);
      return m;
    }
  }

  public BundleConfig {
    args = List.copyOf(args);
    env = List.copyOf(env);
    mounts = List.copyOf(mounts);
    if (args.isEmpty()) throw new IllegalArgumentException("a bundle needs a process to run");
    if (memoryBytes <= 0 || cpus <= 0 || pids <= 0) throw new IllegalArgumentException("limits are mandatory");
  }

  /** The standard mounts every sandbox gets, before {@link #mounts}. */
  static List<Mount> standardMounts() {
    return List.of(
        new Mount("/proc", "proc", "proc", List.of("nosuid", "noexec", "nodev")),
        new Mount("/dev", "tmpfs", "tmpfs", List.of("nosuid", "strictatime", "mode=755", "size=65536k")),
        new Mount("/dev/pts", "devpts", "devpts", List.of("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620")),
        new Mount("/dev/shm", "tmpfs", "shm", List.of("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
        new Mount("/dev/mqueue", "mqueue", "mqueue", List.of("nosuid", "noexec", "nodev")),
        new Mount("/sys", "sysfs", "sysfs", List.of("nosuid", "noexec", "nodev", "ro")));
  }

  /** The document, as the runtime reads it. */
  public Map<String, Object> json() {
    Map<String, Object> process = new LinkedHashMap<>();
    process.put("terminal", false);
    process.put("user", Map.of("uid", 0, "gid", 0));
    process.put("args", args);
    process.put("env", env);
    process.put("cwd", cwd);
    List<String> caps = List.copyOf(new java.util.TreeSet<>(CAPABILITIES));
    process.put("capabilities", Map.of("bounding", caps, "effective", caps, "permitted", caps, "inheritable", List.of(), "ambient", List.of()));
    process.put("noNewPrivileges", true);
    // The node outlives its sandboxes' memory pressure: the kernel picks a sandbox first.
    process.put("oomScoreAdj", 500);

    List<Map<String, Object>> allMounts = new ArrayList<>();
    standardMounts().forEach(m -> allMounts.add(m.json()));
    mounts.forEach(m -> allMounts.add(m.json()));

    Map<String, Object> resources = new LinkedHashMap<>();
    resources.put("devices", List.of(Map.of("allow", false, "access", "rwm")));
    resources.put("memory", Map.of("limit", memoryBytes, "swap", memoryBytes));
    resources.put("cpu", Map.of("quota", cpus * CPU_PERIOD_US, "period", CPU_PERIOD_US));
    resources.put("pids", Map.of("limit", pids));

    Map<String, Object> linux = new LinkedHashMap<>();
    List<Map<String, Object>> idMap = List.of(Map.of("containerID", 0, "hostID", hostIdStart, "size", idCount));
    linux.put("uidMappings", idMap);
    linux.put("gidMappings", idMap);
    linux.put("namespaces", List.of("pid", "network", "ipc", "uts", "mount", "user", "cgroup").stream()
        .map(t -> Map.of("type", t)).toList());
    linux.put("cgroupsPath", cgroupsPath);
    linux.put("resources", resources);
    linux.put("seccomp", seccomp);
    linux.put("maskedPaths", MASKED_PATHS);
    linux.put("readonlyPaths", READONLY_PATHS);
    linux.put("rootfsPropagation", "private");

    Map<String, Object> doc = new LinkedHashMap<>();
    doc.put("ociVersion", "1.0.2");
    doc.put("process", process);
    doc.put("root", Map.of("path", root.toString(), "readonly", false));
    doc.put("hostname", hostname);
    doc.put("mounts", allMounts);
    doc.put("linux", linux);
    return doc;
  }

  /** Writes {@code dir/config.json} (0600: it names host paths and ids), atomically. */
  public Path write(Path dir) throws IOException {
    Path tmp = dir.resolve("config.json.tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(tmp.toFile(), json());
    return Files.move(tmp, dir.resolve("config.json"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }
}
