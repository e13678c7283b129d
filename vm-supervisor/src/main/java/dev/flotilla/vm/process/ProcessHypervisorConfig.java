package dev.flotilla.vm.process;

import dev.flotilla.vm.net.EgressConfig;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;

/**
 * Settings of the process driver.
 *
 * @param runtimeDir the sandbox runtime (agent, jlinked JRE with its own glibc, tini, busybox) that
 *     every sandbox gets read-only at {@code /.fl}: {@code guest-image/build-sandbox-runtime.sh}
 * @param defaultRootfs the root file system of the default image (a single layer), used when a
 *     sandbox names no image: {@code guest-image/build-default-image.sh}
 * @param jvmFlags flags for the agent's JVM: small heap, serial GC, C1 only, no perf data file
 * @param stateRoot node-only directory (0700) where each VM's state directory and each sandbox's
 *     writable layer image live
 * @param runRoot where the node mounts each sandbox's root file system and agent directory: a
 *     directory the sandbox's unprivileged uid can traverse (0711) but not list, outside the data
 *     directory so that any data directory works, even one under a 0700 home
 * @param ociRuntime the OCI runtime binary ({@code runc})
 * @param seccompProfile Podman's seccomp profile, converted for each sandbox
 * @param cgroupParent the cgroup under which each sandbox's container gets its own
 * @param defaultPidsLimit the pids limit when a spec says 0 (counts threads: the agent JVM has ~30)
 * @param defaultDiskMiB the writable layer's size when a spec says none
 * @param network egress networking: protected endpoints, DNS, refresh ({@link EgressConfig})
 */
public record ProcessHypervisorConfig(
    Path runtimeDir,
    Path defaultRootfs,
    List<String> jvmFlags,
    Path stateRoot,
    Path runRoot,
    Path ociRuntime,
    Path seccompProfile,
    String cgroupParent,
    int defaultPidsLimit,
    int defaultDiskMiB,
    EgressConfig network) {

  /**
   * The agent's JVM flags. build-sandbox-runtime.sh makes the runtime's class archive with the same
   * flags (an AOT cache made with others is refused). No -Xshare: auto is 17's default, and JDK 25
   * refuses to start with any -Xshare next to -XX:AOTCache.
   */
  public static final List<String> LEAN_JVM_FLAGS = List.of(
      "-XX:+UseSerialGC",
      "-XX:TieredStopAtLevel=1",
      "-XX:CICompilerCount=1",
      "-Xss512k",
      "-Xmx48m",
      "-XX:MaxMetaspaceSize=64m",
      "-XX:ReservedCodeCacheSize=16m",
      "-XX:-UsePerfData");

  public static final Path PODMAN_SECCOMP = Path.of("/usr/share/containers/seccomp.json");

  public ProcessHypervisorConfig {
    Objects.requireNonNull(runtimeDir, "runtimeDir");
    Objects.requireNonNull(defaultRootfs, "defaultRootfs");
    Objects.requireNonNull(stateRoot, "stateRoot");
    Objects.requireNonNull(runRoot, "runRoot");
    Objects.requireNonNull(ociRuntime, "ociRuntime");
    Objects.requireNonNull(seccompProfile, "seccompProfile");
    jvmFlags = List.copyOf(jvmFlags);
    if (cgroupParent == null || !cgroupParent.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")) {
      throw new IllegalArgumentException("cgroupParent must be a plain name");
    }
    if (defaultDiskMiB < 16) throw new IllegalArgumentException("defaultDiskMiB must be at least 16");
    Objects.requireNonNull(network, "network");
  }

  /** Without egress settings: {@link EgressConfig#defaults()}. */
  public ProcessHypervisorConfig(Path runtimeDir, Path defaultRootfs, List<String> jvmFlags, Path stateRoot, Path runRoot,
      Path ociRuntime, Path seccompProfile, String cgroupParent, int defaultPidsLimit, int defaultDiskMiB) {
    this(runtimeDir, defaultRootfs, jvmFlags, stateRoot, runRoot, ociRuntime, seccompProfile, cgroupParent, defaultPidsLimit,
        defaultDiskMiB, EgressConfig.defaults());
  }

  /** Lean agent flags, runc from PATH, Podman's profile, cgroup parent {@code flotilla}, 1 GiB disks. */
  public static ProcessHypervisorConfig of(Path runtimeDir, Path defaultRootfs, Path stateRoot) {
    Path runc = HostFacts.which("runc").orElse(Path.of("/usr/sbin/runc"));
    return new ProcessHypervisorConfig(runtimeDir, defaultRootfs, LEAN_JVM_FLAGS, stateRoot, runRootFor(stateRoot), runc,
        PODMAN_SECCOMP, "flotilla", 1024, 1024,
        EgressConfig.defaults().withPasta(HostFacts.which("pasta").orElse(Path.of("/usr/bin/pasta"))));
  }

  /** {@code /run/flotilla/<16 hex of the state root's path>}: one per node data directory. */
  public static Path runRootFor(Path stateRoot) {
    try {
      byte[] h = java.security.MessageDigest.getInstance("SHA-256")
          .digest(stateRoot.toAbsolutePath().normalize().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
      return dev.flotilla.vm.VmHandle.RUN_ROOT.resolve(HexFormat.of().formatHex(h, 0, 8));
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  public ProcessHypervisorConfig withCgroupParent(String parent) {
    return new ProcessHypervisorConfig(runtimeDir, defaultRootfs, jvmFlags, stateRoot, runRoot, ociRuntime, seccompProfile, parent, defaultPidsLimit, defaultDiskMiB, network);
  }

  public ProcessHypervisorConfig withRuntimeDir(Path dir) {
    return new ProcessHypervisorConfig(dir, defaultRootfs, jvmFlags, stateRoot, runRoot, ociRuntime, seccompProfile, cgroupParent, defaultPidsLimit, defaultDiskMiB, network);
  }

  public ProcessHypervisorConfig withOciRuntime(Path binary) {
    return new ProcessHypervisorConfig(runtimeDir, defaultRootfs, jvmFlags, stateRoot, runRoot, binary, seccompProfile, cgroupParent, defaultPidsLimit, defaultDiskMiB, network);
  }

  public ProcessHypervisorConfig withDefaultDiskMiB(int mib) {
    return new ProcessHypervisorConfig(runtimeDir, defaultRootfs, jvmFlags, stateRoot, runRoot, ociRuntime, seccompProfile, cgroupParent, defaultPidsLimit, mib, network);
  }

  public ProcessHypervisorConfig withNetwork(EgressConfig egress) {
    return new ProcessHypervisorConfig(runtimeDir, defaultRootfs, jvmFlags, stateRoot, runRoot, ociRuntime, seccompProfile, cgroupParent, defaultPidsLimit, defaultDiskMiB, egress);
  }

  /** With these endpoints refused to every sandbox ({@code host:port}: the node's gRPC, Artery, the journal). */
  public ProcessHypervisorConfig withProtectedEndpoints(List<String> endpoints) {
    return withNetwork(network.withProtectedEndpoints(endpoints));
  }

  /** The conventional state directory of one incarnation: {@code <root>/<sandbox>-<incarnation>}. */
  public Path stateDirFor(String sandboxId, long incarnation) {
    return stateRoot.resolve(sandboxId + "-" + incarnation);
  }
}
