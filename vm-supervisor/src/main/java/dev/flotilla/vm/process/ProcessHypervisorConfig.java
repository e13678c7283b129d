package dev.flotilla.vm.process;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * Settings of the process driver.
 *
 * @param javaPath the {@code java} launcher that runs the guest agent
 * @param agentJar the guest agent's runnable jar
 * @param jvmFlags flags for the agent's JVM: small heap, serial GC, C1 only, no perf data file
 * @param stateRoot where each sandbox's state directory goes by default ({@link #stateDirFor})
 * @param cgroupParent name of the cgroup under which each sandbox gets its own, in every hierarchy
 * @param defaultPidsLimit the pids limit when a spec says 0 (counts threads: the agent JVM has ~30)
 * @param subordinateIds use an /etc/subuid range for the sandbox's root where the host has one;
 *     false forces {@code --map-root-user}
 * @param cgroups use cgroups where the host has them; false leaves limits unenforced and pauses
 *     with SIGSTOP (for hosts where the node may not touch cgroups, and to test that path)
 * @param classDataArchive make and use a class-data (AppCDS) archive of the agent under
 *     {@code stateRoot/.cds}: faster agent start, made once per agent jar
 */
public record ProcessHypervisorConfig(
    Path javaPath,
    Path agentJar,
    List<String> jvmFlags,
    Path stateRoot,
    String cgroupParent,
    int defaultPidsLimit,
    boolean subordinateIds,
    boolean cgroups,
    boolean classDataArchive) {

  public static final List<String> LEAN_JVM_FLAGS = List.of(
      "-XX:+UseSerialGC",
      "-XX:TieredStopAtLevel=1",
      "-XX:CICompilerCount=1",
      "-Xss512k",
      "-Xmx48m",
      "-XX:MaxMetaspaceSize=64m",
      "-XX:ReservedCodeCacheSize=16m",
      "-XX:-UsePerfData",
      "-Xshare:auto");

  public ProcessHypervisorConfig {
    Objects.requireNonNull(javaPath, "javaPath");
    Objects.requireNonNull(agentJar, "agentJar");
    Objects.requireNonNull(stateRoot, "stateRoot");
    jvmFlags = List.copyOf(jvmFlags);
    if (cgroupParent == null || cgroupParent.isBlank() || cgroupParent.contains("..")) {
      throw new IllegalArgumentException("cgroupParent must be a plain name");
    }
  }

  /** The running JVM's own {@code java}, lean flags, cgroup parent {@code flotilla}. */
  public static ProcessHypervisorConfig of(Path agentJar, Path stateRoot) {
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    return new ProcessHypervisorConfig(java, agentJar, LEAN_JVM_FLAGS, stateRoot, "flotilla", 1024, true, true, true);
  }

  public ProcessHypervisorConfig withSubordinateIds(boolean use) {
    return new ProcessHypervisorConfig(javaPath, agentJar, jvmFlags, stateRoot, cgroupParent, defaultPidsLimit, use, cgroups, classDataArchive);
  }

  public ProcessHypervisorConfig withCgroupParent(String parent) {
    return new ProcessHypervisorConfig(javaPath, agentJar, jvmFlags, stateRoot, parent, defaultPidsLimit, subordinateIds, cgroups, classDataArchive);
  }

  public ProcessHypervisorConfig withCgroups(boolean use) {
    return new ProcessHypervisorConfig(javaPath, agentJar, jvmFlags, stateRoot, cgroupParent, defaultPidsLimit, subordinateIds, use, classDataArchive);
  }

  public ProcessHypervisorConfig withAgentJar(Path jar) {
    return new ProcessHypervisorConfig(javaPath, jar, jvmFlags, stateRoot, cgroupParent, defaultPidsLimit, subordinateIds, cgroups, classDataArchive);
  }

  public ProcessHypervisorConfig withClassDataArchive(boolean use) {
    return new ProcessHypervisorConfig(javaPath, agentJar, jvmFlags, stateRoot, cgroupParent, defaultPidsLimit, subordinateIds, cgroups, use);
  }

  /** The conventional state directory of one incarnation: {@code <root>/<sandbox>/<incarnation>}. */
  public Path stateDirFor(String sandboxId, long incarnation) {
    return stateRoot.resolve(sandboxId).resolve(Long.toString(incarnation));
  }
}
