package dev.flotilla.vm;

import java.util.List;
import java.util.Set;

/**
 * What a driver offers on this host.
 *
 * @param isolation {@code "vm"} for hardware virtualisation, {@code "process"} for namespaces
 * @param pause whether pause/resume works here
 * @param adopt whether a restarted node can re-attach to a running VM
 * @param enforcedLimits which of {@code memory}, {@code cpu}, {@code pids} are enforced here
 * @param warnings what is not enforced or degraded on this host, said once at node start
 */
public record HypervisorCapabilities(
    String isolation, boolean pause, boolean adopt, Set<String> enforcedLimits, List<String> warnings) {

  public HypervisorCapabilities {
    enforcedLimits = Set.copyOf(enforcedLimits);
    warnings = List.copyOf(warnings);
  }
}
