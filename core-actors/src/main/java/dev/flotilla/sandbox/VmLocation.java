package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import dev.flotilla.vm.VmHandle;
import java.nio.file.Path;
import java.util.Map;

/**
 * Where an incarnation's VM runs and how to find it again: a journal-stable copy of the driver's
 * {@link VmHandle} (plain strings, so a change in the driver's types never breaks replay).
 *
 * @param node cluster address (host:port) of the node that started or adopted it
 * @param hostId identity of the physical host (machine id), so only that host tries to adopt it
 */
public record VmLocation(
    String node,
    String hostId,
    String driver,
    long pid,
    long startTime,
    String stateDir,
    String agentSocket,
    Map<String, String> extra)
    implements FlotillaSerializable {

  public VmLocation {
    extra = extra == null ? Map.of() : Map.copyOf(extra);
  }

  static VmLocation of(String node, String hostId, VmHandle h) {
    return new VmLocation(node, hostId, h.driver(), h.pid(), h.startTime(), h.stateDir().toString(),
        h.agentSocket().toString(), h.extra());
  }

  VmHandle toHandle(String sandboxId, long incarnation) {
    return new VmHandle(driver, sandboxId, incarnation, pid, startTime, Path.of(stateDir), Path.of(agentSocket), extra);
  }
}
