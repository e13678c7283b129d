package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * What a user asked for: immutable once the sandbox exists. Stored inside events, so fields are
 * only ever added (the Kryo record serializer fills missing ones with defaults on replay).
 */
public record SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy)
    implements FlotillaSerializable {

  public SandboxSpec {
    Objects.requireNonNull(driver, "driver");
    labels = labels == null ? Map.of() : Map.copyOf(new TreeMap<>(labels));
    restartPolicy = restartPolicy == null ? RestartPolicy.ALWAYS : restartPolicy;
  }
}
